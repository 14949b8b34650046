"""The GM challenge's results table (Prados et al. 2017) from the run folders of a protocol sweep.

Metrics, in the challenge's order and names: Dice, JI (Jaccard), CC (conformity coefficient,
(3·Dice − 2)/Dice), TPR, TNR, PPV (precision), HD, MSD (mm), SHD, SMD (skeletonized Hausdorff and
median distance, mm, SCT's definition — ``evaluation.metrics``). Every value is a test
subject scored on its native grid (``data.scoring: native``), here for one class (default ``gm``).

Layout: one block per model; rows per reference and site — the consensus (the fused mask the run
evaluates on) per site and over all sites; the mean over the raters (per subject, the mean of its
4 rater scores) and each rater over all sites. Cells are mean ± sd over the test subjects of the
row (``n`` column); every subject of a k-fold protocol appears once per model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from runs import run_folder
from runs.run_folder import RunFolder

METRICS: tuple[tuple[str, str], ...] = (
    ("Dice", "dice"),
    ("JI", "jaccard"),
    ("CC", "conformity"),
    ("TPR", "tpr"),
    ("TNR", "tnr"),
    ("PPV", "precision"),
    ("HD", "hd"),
    ("MSD", "msd"),
    ("SHD", "skel_hd"),
    ("SMD", "skel_md"),
)
_ORIG = re.compile(r"^(site\d+)-sc\d+$")
_BIDS = re.compile(r"^sub-([a-z]+)\d+$")


def site_of(subject: str) -> str:
    """``site1-sc03`` → ``site1``; ``sub-ucl003`` → ``site1`` (curated BIDS); else ``?``."""
    from data_modules.gmchallenge import BIDS_TO_SITE

    m = _ORIG.match(subject)
    if m:
        return m.group(1)
    m = _BIDS.match(subject)
    return BIDS_TO_SITE.get(m.group(1), m.group(1)) if m else "?"


def gather(run_dirs: Iterable[str | Path], cls: str = "gm") -> pd.DataFrame:
    """Long table: model, subject, site, reference (``consensus`` | ``rater<N>``), one column per metric."""
    rows = []
    for run in run_dirs:
        run = Path(run)
        cfg = RunFolder(run).read_config()
        df = RunFolder(run).read_test_metrics()
        check_metrics(df, cls, cfg, RunFolder(run).test_metrics)
        refs = {"consensus": ""} | {
            r: f"{r}/" for r in sorted({c.split("/")[0] for c in df.columns if c.count("/") == 2})
        }
        for _, rec in df.iterrows():
            for ref, prefix in refs.items():
                if f"{prefix}{cls}/dice" not in rec:
                    continue
                rows.append(
                    {
                        "model": cfg["model"]["name"],
                        "subject": rec["subject"],
                        "site": site_of(rec["subject"]),
                        "reference": ref,
                        **{name: float(rec[f"{prefix}{cls}/{key}"]) for name, key in METRICS},
                    }
                )
    return pd.DataFrame(rows, columns=["model", "subject", "site", "reference", *[n for n, _ in METRICS]])


def check_metrics(df: pd.DataFrame, cls: str, cfg: dict, path: Path) -> None:
    """A run's test metrics hold every challenge metric of ``cls``; else one line naming the file
    (a run of another task, or scored without some metrics), never a table with empty cells."""
    from core.errors import InputError

    if f"{cls}/dice" not in df.columns:
        scored = sorted({c.split("/")[-2] for c in df.columns if c.endswith("/dice")})
        raise InputError(
            f"a run of task {cfg['data']['task']!r} scores no class {cls!r} (it scores {', '.join(scored) or 'none'}): "
            f"the GM challenge table needs {cls}/<metric> columns (a GM-task protocol sweep, or another --class)",
            path,
        )
    missing = [f"{cls}/{key}" for _, key in METRICS if f"{cls}/{key}" not in df.columns]
    if missing:
        raise InputError(
            f"no {', '.join(missing)} column(s): the GM challenge table needs every challenge metric "
            f"({', '.join(n for n, _ in METRICS)}); score the run again with cordbench test",
            path,
        )


def _cell(v: pd.Series) -> str:
    v = v.astype(float)
    if len(v) < 2:
        return f"{v.mean():.3f}"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def challenge_table(long: pd.DataFrame) -> pd.DataFrame:
    """The rows of the module docstring's layout, cells formatted ``mean ± sd``."""
    names = [n for n, _ in METRICS]
    out = []
    for model in sorted(long["model"].unique()):
        d = long[long["model"] == model]
        cons = d[d["reference"] == "consensus"]
        for site in sorted(cons["site"].unique()) + ["all"]:
            part = cons if site == "all" else cons[cons["site"] == site]
            out.append(
                {
                    "model": model,
                    "reference": "consensus",
                    "site": site,
                    "n": len(part),
                    **{n: _cell(part[n]) for n in names},
                }
            )
        raters = d[d["reference"] != "consensus"]
        if len(raters):
            mean = raters.groupby("subject")[names].mean()
            out.append(
                {
                    "model": model,
                    "reference": "raters (mean)",
                    "site": "all",
                    "n": len(mean),
                    **{n: _cell(mean[n]) for n in names},
                }
            )
            for ref in sorted(raters["reference"].unique()):
                part = raters[raters["reference"] == ref]
                out.append(
                    {
                        "model": model,
                        "reference": ref,
                        "site": "all",
                        "n": len(part),
                        **{n: _cell(part[n]) for n in names},
                    }
                )
    return pd.DataFrame(out, columns=["model", "reference", "site", "n", *names])


def sweep_runs(sweep_dir: str | Path) -> list[Path]:
    """Run folders (with ``test_metrics.csv``) under a sweep folder."""
    return sorted(
        p.parent for p in Path(sweep_dir).rglob(run_folder.TEST_METRICS) if RunFolder(p.parent).config.exists()
    )


def format_table(table: pd.DataFrame, cls: str = "gm") -> str:
    """The table as text, with a header naming the class and the units."""
    head = (
        f"GM challenge table ({cls.upper()}, native grid; mean ± sd over test subjects; HD, MSD, SHD, SMD in mm; "
        "TNR over the whole image)"
    )
    return head + "\n" + table.to_string(index=False)


def table_for_sweep(sweep_dir: str | Path, cls: str = "gm") -> tuple[pd.DataFrame, str]:
    """``(table, text)`` for a finished protocol sweep; also writes ``<sweep>/gmchallenge_table.csv``."""
    from core import io

    runs = sweep_runs(sweep_dir)
    if not runs:
        from core.errors import InputError

        raise InputError("no finished trial (run folder with test_metrics.csv) in this sweep", sweep_dir)
    table = challenge_table(gather(runs, cls))
    io.write_csv(Path(sweep_dir) / "gmchallenge_table.csv", table)
    return table, format_table(table, cls)


def means(long: pd.DataFrame, model: str, reference: str = "consensus") -> dict[str, float]:
    """Unformatted means of one model and reference over all sites (for checks and reports)."""
    d = long[(long["model"] == model) & (long["reference"] == reference)]
    return {n: float(np.mean(d[n])) for n, _ in METRICS}
