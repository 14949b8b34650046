"""Read a sweep folder and build the leaderboard tables (no plotting, no files written).

Sweep folder contract (with ``cordbench sweep``)::

    <sweep>/sweep.yaml        the sweep config (optional here; its ``name`` is a fallback group)
    <sweep>/results.csv       one row per trial: trial_id, status, error, model, preset, seed, data,
                              task, one column per swept knob, val_dice, test_dice, run_dir, …
    <sweep>/trials/<id>/      a cordbench run folder: config.yaml, test_metrics.csv (one row per
                              held-out subject: ``subject`` + ``<class>/<metric>`` columns), …

Only the per-subject files are used for statistics; ``results.csv`` says which trials exist,
their status and their knobs. Trials that cannot be ranked — a non-success status (``ERROR``,
or still ``RUNNING`` in a partial file), stopped early by the scheduler, or missing per-subject
metrics — are kept in :attr:`Leaderboard.failed` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import ConfigError, InputError
from core.paths import require_dir
from leaderboard import protocol, stats
from runs.run_folder import RunFolder
from sweeps import records as sweep_records

#: results.csv columns that are not swept knobs: what ``cordbench sweep`` writes besides the knobs,
#: plus Ray Tune result columns and ``fold`` that hand-made results files may carry.
BASE_COLUMNS = tuple(sweep_records.BASE_COLUMNS + sweep_records.TAIL_COLUMNS) + (
    "fold",
    "node",
    "hostname",
    "iterations",
    "time_total_s",
    "timestamp",
    "checkpoint",
    "logdir",
    "trial_name",
)
METRIC_PREFIXES = ("val_", "test_", "train_", "val/", "test/", "train/")
SUCCESS = frozenset({"ok", "success", "succeeded", "completed", "complete", "done", "finished", "terminated"})
BY_CHOICES = ("model", "config")


@dataclass
class Sweep:
    """A sweep folder's results table and swept knobs."""

    root: Path
    results: pd.DataFrame
    knobs: list[str]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The sweep's name: ``name`` in sweep.yaml, else the folder name."""
        return str(self.config.get("name") or self.root.name)

    def trial_dir(self, row: pd.Series) -> Path:
        """A trial's run folder: ``run_dir`` (relative to the sweep) or ``trials/<trial_id>``."""
        rd = row.get("run_dir")
        if isinstance(rd, str) and rd.strip():
            p = Path(rd)
            return p if p.is_absolute() else self.root / p
        return self.root / sweep_records.trial_rel(str(row["trial_id"]))

    def run_folder(self, row: pd.Series) -> RunFolder:
        """A trial's :class:`~runs.run_folder.RunFolder`."""
        return RunFolder(self.trial_dir(row))


def fmt_value(v: Any) -> Any:
    """Knob value for display/grouping: NaN → None, 3.0 → 3, others unchanged."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def knob_value(v: Any) -> str | None:
    """Knob value as text for grouping and display: NaN → None, 3.0 → "3", "[2, 2]" unchanged."""
    v = fmt_value(v)
    return None if v is None else str(v)


def check_complete_rows(path: Path) -> None:
    """Refuse a ``results.csv`` with a row of fewer (or more) fields than its header.

    pandas fills the missing fields of a half-written last row with NaN, and such a trial would
    silently drop out of the ranking (its task or data no longer match) instead of counting as failed.
    """
    import csv

    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"unreadable CSV ({exc})", path) from None
    if not rows:
        return
    width = len(rows[0])
    for i, row in enumerate(rows[1:], start=2):
        if row and len(row) != width:
            raise InputError(
                f"line {i} has {len(row)} of the header's {width} fields: a half-written row "
                "(interrupted while writing?); rebuild it with `cordbench sweep --resume <sweep>`",
                path,
            )


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Read ``results.csv`` (+ ``sweep.yaml``); errors name the file."""
    root = require_dir(sweep_dir, "sweep folder")
    path = root / sweep_records.RESULTS_FILE
    if not path.exists():
        raise InputError("no results.csv: not a finished sweep folder (run `cordbench sweep` first)", root)
    check_complete_rows(path)
    try:
        results = sweep_records.read_results_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"unreadable CSV ({exc})", path) from None
    missing = [c for c in ("trial_id", "model") if c not in results.columns]
    if missing:
        raise InputError(f"missing column(s) {missing}; columns: {list(results.columns)}", path)
    if results.empty:
        raise InputError("no trials", path)
    if results["trial_id"].duplicated().any():
        dup = sorted(results.loc[results["trial_id"].duplicated(), "trial_id"].astype(str))
        raise InputError(f"duplicate trial_id(s) {dup}", path)
    results["trial_id"] = results["trial_id"].astype(str)
    knobs = [
        c
        for c in results.columns
        if c not in BASE_COLUMNS and not c.startswith(METRIC_PREFIXES) and not c.endswith(("_dice", "_loss"))
    ]
    config: dict[str, Any] = {}
    if (root / sweep_records.SWEEP_FILE).exists():
        from runs.config import load_yaml

        config = load_yaml(root / sweep_records.SWEEP_FILE)
    return Sweep(root, results, knobs, config)


def _succeeded(row: pd.Series) -> bool:
    status = row.get("status")
    if status is None or (isinstance(status, float) and math.isnan(status)):
        return True  # no status recorded: judged by its files
    return str(status).strip().lower() in SUCCESS


def _truthy(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")


def entry_name(row: pd.Series, knobs: list[str], by: str) -> str:
    """Leaderboard entry of a trial: the model, or model/preset plus its non-empty knobs."""
    if by == "model":
        return str(row["model"])
    parts = [str(row["model"])]
    preset = fmt_value(row.get("preset"))
    if preset is not None:
        parts[0] += f"/{preset}"
    parts += [f"{k}={knob_value(row[k])}" for k in knobs if knob_value(row.get(k)) is not None]
    return " ".join(parts)


def _choose(values: pd.Series, wanted: str | None, what: str, flag: str, path: Path) -> str | None:
    present = sorted({str(v) for v in values.dropna()})
    if wanted is not None:
        if wanted not in present:
            raise ConfigError(f"{flag} {wanted!r} not in the sweep; {what}: {present}", path)
        return wanted
    if len(present) > 1:
        raise ConfigError(f"the sweep mixes {what} {present}: choose one with {flag}", path)
    return present[0] if present else None


def resolve_class(columns: list[str], metric: str, cls: str | None, task: str | None, path: Path) -> str:
    """Column ``<class>/<metric>`` to rank on: ``--class``, else the task's own class, else the only one."""
    classes = sorted({c.rsplit("/", 1)[0] for c in columns if "/" in c and c.rsplit("/", 1)[1] == metric})
    if not classes:
        raise InputError(f"no '<class>/{metric}' column; columns: {columns}", path)
    if cls is not None:
        if cls not in classes:
            raise ConfigError(f"--class {cls!r} has no {metric!r} values; classes: {classes}", path)
        return f"{cls}/{metric}"
    if task in classes:
        return f"{task}/{metric}"
    if len(classes) == 1:
        return f"{classes[0]}/{metric}"
    raise ConfigError(f"several classes have {metric!r}: choose one with --class from {classes}", path)


def read_per_subject(
    sweep: Sweep, rows: pd.DataFrame, contrast: str | None = None
) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]]]:
    """``test_metrics.csv`` of each trial (only its ``contrast`` rows when given); trials without a readable
    file, or without such rows, become failures."""
    frames: dict[str, pd.DataFrame] = {}
    failed: list[dict[str, Any]] = []
    for _, row in rows.iterrows():
        run = sweep.run_folder(row)
        path = run.test_metrics
        try:
            df = run.read_test_metrics()
        except FileNotFoundError:
            failed.append({"trial_id": row["trial_id"], "reason": f"no per-subject metrics ({path.name} missing)"})
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            failed.append({"trial_id": row["trial_id"], "reason": f"unreadable {path.name}: {exc}"})
            continue
        if contrast is not None:
            df = df[df["contrast"].astype(str) == contrast] if "contrast" in df.columns else df.iloc[:0]
        if "subject" not in df.columns or df.empty:
            what = f" of contrast {contrast}" if contrast is not None else ""
            failed.append({"trial_id": row["trial_id"], "reason": f"{path.name} has no subject rows{what}"})
            continue
        df["subject"] = df["subject"].astype(str)
        frames[row["trial_id"]] = df
    return frames, failed


@dataclass
class Leaderboard:
    """Everything the reports show."""

    table: pd.DataFrame  # one row per entry, sorted by rank
    long: pd.DataFrame  # entry, trial_id, seed, subject, value (+ knobs)
    failed: pd.DataFrame  # failed / unusable trials with the reason
    ablations: dict[str, pd.DataFrame]  # knob -> value, n_trials, n_subjects, mean, ci_low, ci_high
    meta: dict[str, Any]  # metric, column, task, by, n_boot, seed, …
    sweep: Sweep
    morpho: Any = None  # leaderboard.morphometrics.MorphoSummary (or None)
    real: Any = None  # leaderboard.real.RealSummary (``--real DIR``; or None)
    ensembles: Any = None  # leaderboard.ensembles.EnsembleSummary (``--ensembles``/``--soft-csa``; or None)
    precision: Any = None  # leaderboard.precision.PrecisionSummary (or None)


def build_leaderboard(
    sweep_dir: str | Path | Sweep,
    metric: str = "dice",
    task: str | None = None,
    cls: str | None = None,
    by: str = "model",
    n_boot: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
    cost: bool = True,
    data: str | None = None,
    delta: float = 0.01,
    morphometrics: bool | None = None,
    refresh_morphometrics: bool = False,
    log: Callable[[str], None] | None = None,
    real: str | Path | None = None,
    ensembles: bool = False,
    soft_csa: bool = False,
    precision: bool | None = None,
    precision_data: str | Path | None = None,
    externals: dict[str, Path] | None = None,
    contrast: str | None = None,
) -> Leaderboard:
    """Rank the sweep's models (``by="model"``) or configurations (``by="config"``) on ``metric``.

    ``morphometrics``: add the CSA-error and FA–SAC/CSA columns (:mod:`leaderboard.morphometrics`);
    None = when the task is ``sc`` and the trials' data has the labels, True = required, False = off.
    ``log`` receives progress lines (one per trial whose morphometrics are computed).
    ``real``: a real labelled set (:mod:`data_modules.real`) to score every ranked trial's best checkpoint
    on, adding the real columns (:mod:`leaderboard.real`).
    ``ensembles`` / ``soft_csa``: the ``<entry> (ensemble)`` rows and the soft-mask CSA columns
    (:mod:`leaderboard.ensembles`).
    ``precision``: the precision columns (:mod:`leaderboard.precision`; None = when the data have more than
    one contrast or session per subject), measured on ``precision_data`` (default: the trials' own data).
    ``externals``: ``{name: cordbench score folder}`` ranked beside the trials (:mod:`leaderboard.external`).
    ``contrast``: rank on that contrast's images only (``test_metrics.csv``'s ``contrast`` column).
    """
    if by not in BY_CHOICES:
        raise ConfigError(f"--by must be one of {list(BY_CHOICES)}, got {by!r}")
    if n_boot < 1:
        raise ConfigError(f"--n-boot must be ≥ 1, got {n_boot}")
    if not (delta >= 0 and math.isfinite(delta)):
        raise ConfigError(f"--delta must be a finite number ≥ 0, got {delta}")
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
    sweep = sweep_dir if isinstance(sweep_dir, Sweep) else load_sweep(sweep_dir)
    res = sweep.results.copy()
    csv_path = sweep.root / sweep_records.RESULTS_FILE
    if "task" in res.columns:
        task = _choose(res["task"], task, "tasks", "--task", csv_path)
        res = res[res["task"].astype(str) == task] if task is not None else res
    if "data" in res.columns:
        data = _choose(res["data"], data, "data sets", "--data", csv_path)
        res = res[res["data"].astype(str) == data] if data is not None else res
    if externals:
        from leaderboard.external import external_rows

        res = pd.concat([res, external_rows(res, externals)], ignore_index=True)
    res = res.copy()
    is_ext = res["external"].notna() if "external" in res.columns else pd.Series(False, res.index)
    res["entry"] = [entry_name(r, sweep.knobs, by) for _, r in res.iterrows()]

    failed_rows: list[dict[str, Any]] = []
    ok_mask = res.apply(_succeeded, axis=1)
    for _, row in res[~ok_mask].iterrows():
        err = row.get("error")
        failed_rows.append(
            {
                "trial_id": row["trial_id"],
                "reason": f"status {row.get('status')}" + (f": {err}" if isinstance(err, str) and err else ""),
            }
        )
    early = res["early_stopped"].map(_truthy) if "early_stopped" in res.columns else pd.Series(False, res.index)
    for _, row in res[ok_mask & early].iterrows():
        failed_rows.append({"trial_id": row["trial_id"], "reason": "stopped early by the scheduler (no test metrics)"})
    ok_mask &= ~early
    knobs = [k for k in sweep.knobs if k in res.columns]
    notes = protocol.split_by_protocol(sweep, res, ok_mask, knobs)  # never pool differently scored trials
    frames, unreadable = read_per_subject(sweep, res[ok_mask], contrast)
    if contrast is not None:
        notes.append(f"Contrast {contrast} only: each trial's test images of that contrast (one row each).")
    failed_rows += unreadable

    column = None
    records = []
    for _, row in res[ok_mask].iterrows():
        df = frames.get(row["trial_id"])
        if df is None:
            continue
        if column is None:
            column = resolve_class(list(df.columns), metric, cls, task, sweep.run_folder(row).test_metrics)
        if column not in df.columns:
            failed_rows.append(
                {
                    "trial_id": row["trial_id"],
                    "reason": f"{sweep.run_folder(row).test_metrics.name} has no {column!r} column",
                }
            )
            continue
        values = pd.to_numeric(df[column], errors="coerce")  # ±inf: leaderboard.protocol.failures_as_worst
        if is_ext[row.name]:  # an external entry counts on the sweep's held-out subjects only
            held = {r["subject"] for r in records if not str(r["trial_id"]).startswith("external:")}
            df, values = df[df["subject"].isin(held)], values[df["subject"].isin(held)]
        for subject, value in zip(df["subject"], values):
            records.append(
                {
                    "entry": row["entry"],
                    "trial_id": row["trial_id"],
                    "model": row["model"],
                    "seed": fmt_value(row.get("seed")),
                    "subject": subject,
                    "value": float(value),
                    **{k: knob_value(row.get(k)) for k in knobs},
                }
            )
    long = pd.DataFrame(records, columns=["entry", "trial_id", "model", "seed", "subject", "value", *knobs])
    long[knobs] = long[knobs].astype(object)
    failed = _failed_table(res, failed_rows, knobs)
    if long.empty:
        raise InputError(
            f"no successful trial with per-subject {metric!r} metrics "
            f"({len(failed)} failed: {failed['reason'].head(3).tolist()})",
            sweep.root,
        )
    ens = None
    if ensembles or soft_csa:
        from leaderboard.ensembles import entry_ensembles

        ens = entry_ensembles(
            sweep,
            res[ok_mask & res["trial_id"].isin(long["trial_id"])],
            column,
            knobs,
            ensembles=ensembles,
            morpho=morphometrics is not False and task in (None, "sc"),
            soft_csa=soft_csa,
            log=log,
        )
        long = pd.concat([long, ens.long], ignore_index=True) if len(ens.long) else long
    higher = not stats.lower_is_better(metric)
    long, failure_note = protocol.failures_as_worst(long, higher)
    notes += [failure_note] if failure_note else []
    wide = stats.per_subject_means(long)
    ranked = stats.rank_entries(wide, higher_is_better=higher, n_boot=n_boot, seed=seed, alpha=alpha, delta=delta)
    sds = stats.trial_sd(long)
    seeds = stats.seed_spread(long).set_index("entry")
    ok_res = res[ok_mask & res["trial_id"].isin(long["trial_id"])]
    rows = []
    for st in ranked:
        base = ens.base.get(st.entry, st.entry) if ens is not None else st.entry
        trials = ok_res[ok_res["entry"] == base]
        first = trials.iloc[0]
        row = {"rank": st.rank, "entry": st.entry, "model": first["model"]}
        for k in (["preset"] if "preset" in trials else []) + knobs:
            vals = {knob_value(v) for v in trials[k]}
            row[k] = vals.pop() if len(vals) == 1 else "mixed"
        row.update(
            {
                "n_trials": len(trials),
                "n_subjects": st.n_subjects,
                "mean": st.mean,
                "n_failed": int(long.loc[long["entry"] == st.entry, "failed"].sum()),
                "ci_low": st.ci_low,
                "ci_high": st.ci_high,
                "trial_sd": sds.get(st.entry, float("nan")),
                "p_wilcoxon": st.p_value,
                "p_holm": st.p_holm,
                "best": st is ranked[0],
                "tied_with_best": st.tied_with_best,
                "label": st.label,
                "label_reason": st.label_reason,
                "n_pairs": st.n_pairs,
                "diff_to_best": st.diff,
                "diff_ci_low": st.diff_low,
                "diff_ci_high": st.diff_high,
                "effect_dz": st.effect_dz,
                "effect_rank_biserial": st.effect_rbc,
                "p_min_holm": st.p_min_holm,
                "n_seeds": int(seeds.loc[st.entry, "n_seeds"]),
                "seed_sd": float(seeds.loc[st.entry, "seed_sd"]),
            }
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    if "preset" in table and table["preset"].isna().all():
        table = table.drop(columns="preset")
    meta = {
        "metric": metric,
        "column": column,
        "task": task,
        "data": data,
        "by": by,
        "n_boot": n_boot,
        "seed": seed,
        "alpha": alpha,
        "delta": delta,
        "higher_is_better": higher,
        "sweep": sweep.name,
        "n_comparisons": int(sum(1 for st in ranked[1:] if math.isfinite(st.p_value))),
        "n_trials_ok": int(long.loc[~long["entry"].isin(ens.base if ens is not None else {}), "trial_id"].nunique()),
        "n_trials_failed": len(failed),
        "notes": notes,
    }
    from leaderboard.provenance import trial_provenance

    meta.update(trial_provenance(sweep, ok_res))
    if cost:
        from leaderboard.cost import entry_costs

        costs, cost_meta = entry_costs(sweep, ok_res[~is_ext.reindex(ok_res.index)])
        table = table.merge(costs, on="entry", how="left")
        meta.update(cost_meta)
    elif "params" in ok_res.columns:
        params = ok_res.groupby("entry")["params"].median()
        table["params"] = table["entry"].map(params)
    from leaderboard.morphometrics import entry_morphometrics

    morpho = entry_morphometrics(
        sweep, ok_res, task, enabled=morphometrics, n_boot=n_boot, seed=seed, refresh=refresh_morphometrics, log=log
    )
    if ens is not None:
        from leaderboard.ensembles import add_columns

        morpho = add_columns(ens, morpho, n_boot, seed)
        meta["ensembles"] = {"entries": sorted(ens.base), "notes": ens.notes} if ensembles else "off"
        meta["soft_csa"] = soft_csa
    if morpho.enabled and len(morpho.columns):
        table = table.merge(morpho.columns, on="entry", how="left")
    meta["morphometrics"] = "on" if morpho.enabled else morpho.reason
    real_summary = None
    if real is not None:
        from leaderboard.real import entry_real

        real_summary = entry_real(sweep, ok_res, real, column, n_boot=n_boot, seed=seed, log=log)
        table = table.merge(real_summary.columns, on="entry", how="left")
        meta["real"] = str(real_summary.root)
    from leaderboard.precision import entry_precision

    prec = entry_precision(sweep, ok_res, precision, precision_data, n_boot=n_boot, seed=seed, alpha=alpha, log=log)
    if prec.enabled and len(prec.columns):
        table = table.merge(prec.columns, on="entry", how="left")
    meta["precision"] = "on" if prec.enabled else prec.reason
    if externals:
        from leaderboard.external import missing_subjects

        meta["external_notes"] = missing_subjects(long, externals)
    ablations = {}
    swept = [k for k in knobs if long[k].dropna().astype(str).nunique() > 1]
    for k in swept:
        sub = long[long[k].notna()]
        ab = stats.summarise_groups(sub, k, n_boot=n_boot, seed=seed)
        ablations[k] = ab.iloc[_natural_order(ab[k])].reset_index(drop=True)
    return Leaderboard(table, long, failed, ablations, meta, sweep, morpho, real_summary, ens, prec)


def _natural_order(values: pd.Series) -> list[int]:
    """Positions sorting knob values numerically when they are numbers, else as text."""

    def key(v: str) -> tuple[int, Any]:
        try:
            return (0, float(v))
        except ValueError:
            return (1, v)

    return sorted(range(len(values)), key=lambda i: key(str(values.iloc[i])))


def _failed_table(res: pd.DataFrame, failed_rows: list[dict[str, Any]], knobs: list[str]) -> pd.DataFrame:
    cols = ["trial_id", "model", "preset", "seed", *knobs, "reason"]
    out = []
    for f in failed_rows:
        row = res[res["trial_id"] == f["trial_id"]].iloc[0]
        out.append({**{c: knob_value(row.get(c)) for c in cols if c != "reason"}, "reason": f["reason"]})
    return pd.DataFrame(out, columns=cols)
