"""The leaderboard on a small but real sweep folder.

``real_sweep`` (``tests/support/tiny_sweep.py``, built once per test session by ``tests/conftest.py``):
four real ``runs.runner.fit`` runs (tiny networks, phantom cohort of 6 subjects, one short epoch,
offline wandb) laid out as ``cordbench sweep`` lays out a sweep, plus one failed trial row and a
``results.csv``. The tests recompute the leaderboard's statistics independently from the per-subject
files: means by hand, the bootstrap CI against the *exact* bootstrap distribution (all n**n resamples
of the 3 test subjects), Wilcoxon p-values with scipy on the same pairs.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.support.tiny_sweep import GROUP, exact_bootstrap_cdf, wandb_run_info

pytestmark = pytest.mark.slow  # every test here uses the trained sweep


# ------------------------------------------------------------------------------------ helpers
def read_subject_csv(path: Path, column: str) -> dict[str, float]:
    """subject -> value, read with the csv module (independent of pandas and the leaderboard)."""
    with open(path, newline="") as fh:
        return {row["subject"]: float(row[column]) for row in csv.DictReader(fh)}


# ------------------------------------------------------------------------------------ fixtures
N_BOOT = 4000


@pytest.fixture(scope="session")
def rendered(real_sweep, tmp_path_factory):
    """The leaderboard of the real sweep by configuration, with cost figures and a wandb run."""
    from leaderboard import render_leaderboard

    out = tmp_path_factory.mktemp("lb-report")
    files = render_leaderboard(real_sweep, by="config", out=out, n_boot=N_BOOT, seed=3, wandb=True)
    return files, pd.read_csv(files.csv)


def independent_entries(sweep: Path) -> dict[str, dict[str, list[float]]]:
    """entry (from each trial's own config.yaml) -> subject -> values over the entry's trials."""
    out: dict[str, dict[str, list[float]]] = {}
    for tdir in sorted((sweep / "trials").iterdir()):
        cfg = yaml.safe_load((tdir / "config.yaml").read_text())
        opts = cfg["model"]["options"]
        entry = " ".join(
            [f"{cfg['model']['name']}/{cfg['model']['preset']}"] + [f"{k}={v}" for k, v in sorted(opts.items())]
        )
        for subject, value in read_subject_csv(tdir / "test_metrics.csv", "sc/dice").items():
            out.setdefault(entry, {}).setdefault(subject, []).append(value)
    return out


# ------------------------------------------------------------------------------------ tests
def test_means_and_bootstrap_ci_match_independent_recomputation(real_sweep, rendered):
    files, table = rendered
    entries = independent_entries(real_sweep)
    assert sorted(table["entry"]) == sorted(entries)
    for entry, per_subject in entries.items():
        row = table[table["entry"] == entry].iloc[0]
        subj_means = [float(np.mean(v)) for _, v in sorted(per_subject.items())]
        assert row["n_subjects"] == len(subj_means) == 3
        assert row["mean"] == pytest.approx(np.mean(subj_means), abs=1e-12)
        # percentile CI vs the exact bootstrap distribution: F(lo) ≈ 2.5 %, F(hi) ≈ 97.5 %
        cdf = exact_bootstrap_cdf(subj_means)
        tol = 0.01  # > 6 Monte-Carlo standard errors at N_BOOT resamples
        assert cdf(row["ci_low"] - 1e-12) <= 0.025 + tol and cdf(row["ci_low"]) >= 0.025 - tol
        assert cdf(row["ci_high"] - 1e-12) <= 0.975 + tol and cdf(row["ci_high"]) >= 0.975 - tol
        eps = 1e-12  # a resample of one subject three times averages to it within rounding
        assert min(subj_means) - eps <= row["ci_low"] <= row["mean"] <= row["ci_high"] <= max(subj_means) + eps
    unet = table[table["entry"] == "unet/tiny"].iloc[0]
    assert unet["n_trials"] == 2  # two seeds pooled into one entry


def test_wilcoxon_p_values_match_scipy_on_the_same_pairs(real_sweep, rendered):
    from scipy.stats import wilcoxon

    _, table = rendered
    entries = independent_entries(real_sweep)
    means = {e: {s: float(np.mean(v)) for s, v in subj.items()} for e, subj in entries.items()}
    best = max(means, key=lambda e: np.mean(list(means[e].values())))
    assert table.iloc[0]["entry"] == best and bool(table.iloc[0]["best"])
    assert table.iloc[0]["rank"] == 1
    compared = 0
    for _, row in table.iloc[1:].iterrows():
        subjects = sorted(set(means[row["entry"]]) & set(means[best]))
        x = [means[row["entry"]][s] for s in subjects]
        y = [means[best][s] for s in subjects]
        assert row["p_wilcoxon"] == pytest.approx(wilcoxon(x, y).pvalue, rel=1e-12)
        assert row["p_holm"] >= row["p_wilcoxon"]
        compared += 1
    assert compared == len(entries) - 1
    # with 3 subjects no two-sided Wilcoxon p is below 2/2**3 = 0.25: no entry can be found worse, and
    # none may be called tied unless the CI of its difference to the best lies within ±δ around 0
    m = len(entries) - 1
    assert table.iloc[0]["label"] == "best" and bool(table.iloc[0]["tied_with_best"])
    for _, row in table.iloc[1:].iterrows():
        assert row["n_pairs"] == 3 and row["p_min_holm"] == pytest.approx(min(1.0, m * 0.25))
        assert row["label"] in ("tied", "undetermined — n too small"), row["label"]
        lo, hi = row["diff_ci_low"], row["diff_ci_high"]
        if row["label"] == "tied":
            assert -0.01 <= lo <= 0 <= hi <= 0.01
        else:
            assert not (-0.01 <= lo <= 0 <= hi <= 0.01)
            assert "smallest attainable Holm p" in row["label_reason"]
        assert bool(row["tied_with_best"]) == (row["label"] == "tied")
        x = np.array([means[row["entry"]][s] for s in sorted(means[best])])
        y = np.array([means[best][s] for s in sorted(means[best])])
        assert row["diff_to_best"] == pytest.approx(np.mean(x - y), abs=1e-12)
        cdf = exact_bootstrap_cdf(list(x - y))  # exact bootstrap distribution of the mean difference
        assert cdf(lo - 1e-12) <= 0.035 and cdf(lo) >= 0.015 and cdf(hi - 1e-12) <= 0.985 and cdf(hi) >= 0.965
    assert list(table["rank"]) == sorted(table["rank"])
    assert (np.diff(table["mean"]) <= 0).all()


def test_cost_columns_are_measured_for_the_trained_networks(real_sweep, rendered):
    from lightning_modules.registry import build_network

    _, table = rendered
    for _, row in table.iterrows():
        name = row["model"]
        opts = {"skip_connections": int(row["skip_connections"])} if row["entry"].startswith("sattis") else {}
        net = build_network(name, 1, 2, 2, "tiny", **opts)
        assert row["params"] == sum(p.numel() for p in net.parameters())
        assert row["gflops"] > 0 and row["latency_ms"] > 0
        assert row["input"] == "1×1×24×24"


def test_failed_trial_is_listed_not_dropped(rendered):
    files, table = rendered
    md = files.markdown
    assert "## Failed or unranked trials" in md and "t004" in md and "out of memory (simulated)" in md
    assert "1 failed or unranked" in md
    assert "t004" in files.html.read_text()
    assert table["n_trials"].sum() == 4


def test_ablation_view_pools_the_knob_values(real_sweep, rendered):
    files, _ = rendered
    assert set(files.ablation) == {"skip_connections"}
    md = files.markdown
    assert "## Ablation: skip_connections" in md
    entries = independent_entries(real_sweep)
    for k in (0, 1):
        vals = [np.mean(v) for v in entries[f"sattisunet/tiny skip_connections={k}"].values()]
        assert f"| {k} | 1 | 3 | {np.mean(vals):.4f} |" in md


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _assert_real_plot(px: np.ndarray, color: tuple[int, int, int]) -> None:
    nonwhite = (px < 245).any(axis=2).mean()
    assert 0.01 < nonwhite < 0.6, nonwhite
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 20
    close = (np.abs(px.astype(int) - np.array(color)).sum(axis=2) < 30).sum()
    assert close > 20, f"no {color} marks in the plot"


def test_pngs_are_real_plots_of_the_expected_size(rendered):
    from leaderboard.report import ablation_plot_size, leaderboard_plot_size

    files, table = rendered
    px = _pixels(files.png)
    assert (px.shape[1], px.shape[0]) == leaderboard_plot_size(len(table))
    _assert_real_plot(px, (0x1B, 0x5E, 0x20))  # the best entry's dark-green point and bar
    if (table["label"] == "undetermined — n too small").any():
        _assert_real_plot(px, (0x75, 0x75, 0x75))  # undetermined entries in grey, not in "tied" green
    for path in files.ablation.values():
        px = _pixels(path)
        assert (px.shape[1], px.shape[0]) == ablation_plot_size()
        _assert_real_plot(px, (0x2B, 0x57, 0x97))


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium not installed (Debian package `chromium`; `make system-deps`)")
    return exe


def _chromium_args(tmp: Path) -> list[str]:
    return [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp / 'profile'}",
    ]


@pytest.mark.services
def test_html_renders_in_headless_chromium(rendered, tmp_path):
    files, table = rendered
    shot = tmp_path / "shot.png"
    subprocess.run(
        _chromium_args(tmp_path) + [f"--screenshot={shot}", "--window-size=1400,900", files.html.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    px = _pixels(shot)
    assert px.shape[:2] == (900, 1400)
    nonwhite = (px < 245).any(axis=2).mean()
    assert nonwhite > 0.03, nonwhite
    header_blue = (np.abs(px.astype(int) - np.array([0x2B, 0x57, 0x97])).sum(axis=2) < 20).sum()
    assert header_blue > 2000  # the table header row was laid out and painted


@pytest.mark.services
def test_html_table_sorts_with_its_script(rendered, tmp_path):
    files, table = rendered
    html = files.html.read_text()
    assert "<script>" in html and 'src="http' not in html and 'href="http' not in html  # self-contained
    heads = [h.split("</th>")[0] for h in html.split("<thead>")[1].split("</thead>")[0].split("<th>")[1:]]
    col = heads.index("latency ms")
    dom = subprocess.run(
        _chromium_args(tmp_path) + ["--dump-dom", files.html.as_uri() + f"#sort={col}-desc"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    body = dom.split("<tbody>")[1].split("</tbody>")[0]
    order = [row.split("</td>")[1].split(">")[-1] for row in body.split("<tr")[1:]]
    expected = list(table.sort_values("latency_ms", ascending=False)["entry"])
    assert order == expected
    assert 'class="desc"' in dom


def test_leaderboard_wandb_run_in_the_sweep_group(rendered):
    files, table = rendered
    assert files.wandb_run is not None and files.wandb_run.is_dir()
    info = wandb_run_info(files.wandb_run)
    assert info["run"]["run_group"] == GROUP and info["run"]["job_type"] == "leaderboard"
    assert info["summary"]["best/entry"] == table.iloc[0]["entry"]
    assert info["summary"]["best/mean"] == pytest.approx(table.iloc[0]["mean"])
    summary = info["summary"]  # nested values come back flattened: "leaderboard.path", …
    assert summary["leaderboard._type"] == "table-file" and summary["leaderboard.nrows"] == len(table)
    logged = json.loads((files.wandb_run / "files" / summary["leaderboard.path"]).read_text())
    col = logged["columns"].index("entry")
    assert [r[col] for r in logged["data"]] == list(table["entry"])
    plots = {k.split(".")[0] for k in summary if k.startswith("plots/")}
    assert plots == {"plots/leaderboard", "plots/ablation_skip_connections"}


def test_cli_prints_the_markdown_and_report_paths(real_sweep, tmp_path, capsys):
    from cordbench.cli import main

    code = main(
        [
            "leaderboard",
            str(real_sweep),
            "--by",
            "model",
            "--out",
            str(tmp_path),
            "--n-boot",
            "500",
            "--no-wandb",
            "--no-cost",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("# Leaderboard — sweep `lb-test-sweep`")
    assert "| 1 | " in out and "sattisunet" in out and "unet" in out
    assert str(tmp_path / "leaderboard.html") in out and str(tmp_path / "leaderboard.png") in out
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    assert sorted(table["entry"]) == ["sattisunet", "unet"]
    assert dict(zip(table["entry"], table["n_trials"])) == {"sattisunet": 2, "unet": 2}


def test_cli_errors_name_the_problem(real_sweep, tmp_path, capsys):
    from cordbench.cli import main

    assert main(["leaderboard", str(tmp_path / "missing")]) == 2
    assert "sweep folder not found" in capsys.readouterr().err
    assert (
        main(["leaderboard", str(real_sweep), "--class", "gm", "--no-wandb", "--no-cost", "--out", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert "--class 'gm'" in err and "['sc']" in err
    assert main(["leaderboard", str(real_sweep), "--task", "gm", "--no-wandb", "--out", str(tmp_path)]) == 2
    assert "--task 'gm' not in the sweep" in capsys.readouterr().err
