"""runs.run_folder and sweeps.records: one owner for every file name, old folders read identically.

``tests/data/legacy_sweep/`` is a miniature of a real ``cordbench sweep`` folder written by the code
*before* :mod:`runs.run_folder` / :mod:`sweeps.records` existed (2 tiny models × 2 seeds on a
6-subject phantom, then ``cordbench leaderboard --morphometrics``): ``results.csv``, ``sweep.yaml``
and three of the four trials' run folders as the old runner and trainable wrote them (the fourth
trial's folder is left out on purpose: the leaderboard must report it as failed). The checkpoints
are one-line placeholders (the morphometric columns come from each trial's cached
``morphometrics.csv``, which is only used while it is newer than the checkpoint).
``tests/data/legacy_sweep_expected/`` holds what the old code computed from that folder:
the leaderboard table (without the latency, which is measured anew), its per-level morphometrics,
its failed-trial list and the ``results.csv`` rows rebuilt from the trial folders.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from runs import run_folder
from runs.run_folder import RunFolder
from sweeps import records
from tests.support.layout import CODE_FOLDERS

REPO = Path(__file__).resolve().parents[1]
LEGACY = Path(__file__).parent / "data" / "legacy_sweep"
EXPECTED = Path(__file__).parent / "data" / "legacy_sweep_expected"

#: Every file (and folder) name of a run folder and of a sweep folder, and its one owner.
OWNED = {
    **{
        name: "runs/run_folder.py"
        for name in (
            run_folder.CONFIG,
            run_folder.SPLIT,
            run_folder.DATA,
            run_folder.METRICS,
            run_folder.CHECKPOINTS,
            run_folder.BEST_CKPT_NAME,
            run_folder.LAST_CKPT,
            run_folder.TEST_METRICS,
            run_folder.TEST_SUMMARY,
            run_folder.FAILURE,
            run_folder.MORPHOMETRICS,
            run_folder.PREDICTIONS,
            run_folder.QC,
            run_folder.QC_INDEX,
            run_folder.REAL_METRICS,
            run_folder.REAL_SUMMARY,
            run_folder.REAL_PREDICTIONS,
        )
    },
    **{
        name: "sweeps/records.py"
        for name in (
            records.SWEEP_FILE,
            records.RESULTS_FILE,
            records.TRIALS_DIR,
            records.TRIAL_RECORD,
            records.ATTEMPTS,
            records.ELAPSED,
            records.PREVIOUS_METRICS,
            records.RESUME_DIR,
            records.TUNE_CHECKPOINT,
            records.TUNE_META,
            records.SIGNATURES_FILE,
            records.SEARCHER_FILE,
            records.TUNER_FILE,
        )
    },
}
#: The same file name for a file of *another* folder (not a run or sweep folder), with its owner.
OTHER_FOLDERS = {
    ("metrics.csv", "analysis/study.py"),  # the study folder's per subject × level table
    ("morphometrics.csv", "leaderboard/report.py"),  # the leaderboard report folder's table
    ("index.html", "cordbench/commands/predict.py"),  # help of `predict --qc DIR`: DIR/index.html
    ("meta.json", "data_modules/cache.py"),  # a preprocessed-subject cache entry's record
}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _spells(text: str, name: str, owner: bool) -> bool:
    """Whether a string constant names the file: equal, or a path component of it. A folder name
    without a dot (``trials``, ``checkpoints``) is an ordinary word too (a column heading, a dict
    key): outside their owner, only a constant with a ``/`` beside the name counts."""
    if text == name:
        return owner or "." in name
    return text.endswith("/" + name) or text.startswith(name + "/") or f"/{name}/" in text


def spellings() -> dict[str, set[str]]:
    """For each owned name, the modules whose string constants (docstrings aside) spell it."""
    found: dict[str, set[str]] = {name: set() for name in OWNED}
    for pkg in CODE_FOLDERS:
        for path in sorted((REPO / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            skip = _docstrings(tree)
            rel = path.relative_to(REPO).as_posix()
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                    for name in OWNED:
                        if _spells(node.value, name, owner=rel == OWNED[name]):
                            found[name].add(rel)
    return found


def test_each_file_name_is_spelled_in_exactly_one_module():
    """The string constants of the code (docstrings aside) name each file in one module."""
    found = spellings()
    spelled = {name: sorted(m for m in mods if (name, m) not in OTHER_FOLDERS) for name, mods in found.items()}
    assert spelled == {name: [owner] for name, owner in OWNED.items()}


def test_other_folders_exceptions_are_still_needed():
    """The exceptions above are real (a stale one would hide a new spelling)."""
    found = spellings()
    assert all(module in found[name] for name, module in OTHER_FOLDERS), OTHER_FOLDERS


# ------------------------------------------------------------------------------------ the miniature
@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A copy of the miniature with each checkpoint older than its morphometrics cache (git sets mtimes)."""
    dst = tmp_path / "legacy"
    shutil.copytree(LEGACY, dst)
    for ck in dst.glob("trials/*/checkpoints/best.ckpt"):
        os.utime(ck, (1_000_000_000, 1_000_000_000))
    return dst


def test_miniature_has_the_old_layout():
    """The checked-in folder is what the old writers left (a check on the fixture itself)."""
    trial = LEGACY / "trials" / "7b46e_00000"
    names = sorted(p.relative_to(trial).as_posix() for p in trial.rglob("*") if p.is_file())
    assert names == [
        ".attempts",
        ".elapsed.json",
        "checkpoints/best.ckpt",
        "config.yaml",
        "data.json",
        "metrics.csv",
        "morphometrics.csv",
        "split.json",
        "test_metrics.csv",
        "test_summary.json",
        "trial.json",
    ]
    assert sorted(p.name for p in LEGACY.iterdir()) == ["results.csv", "sweep.yaml", "trials"]


def test_run_folder_reads_an_old_run_folder(legacy: Path):
    trial = legacy / "trials" / "7b46e_00002"
    run = RunFolder(trial)
    assert run.read_config()["seed_everything"] == 1 and run.read_config()["model"]["name"] == "unet"
    assert run.read_split() == json.loads((trial / "split.json").read_text())
    assert run.test_subjects() == json.loads((trial / "split.json").read_text())["test"]
    assert run.read_data_description() == json.loads((trial / "data.json").read_text())
    assert run.read_test_summary() == json.loads((trial / "test_summary.json").read_text())
    pd.testing.assert_frame_equal(run.read_test_metrics(), pd.read_csv(trial / "test_metrics.csv"))
    assert run.read_failure() is None and run.best_ckpt.is_file() and run.morphometrics.is_file()
    assert records.read_trial_record(trial) == json.loads((trial / "trial.json").read_text())
    assert records.parse_attempts((trial / ".attempts").read_text()) == 1
    # the same folder through a reader (how sweeps.results reads a sweep at a URI)
    remote = RunFolder(
        Path("trials/7b46e_00002"), reader=lambda rel: (legacy / rel).read_text() if (legacy / rel).is_file() else None
    )
    assert remote.read_config() == run.read_config() and remote.text(run_folder.FAILURE) is None
    pd.testing.assert_frame_equal(remote.read_test_metrics(), run.read_test_metrics())


def test_run_folder_round_trip_and_clear_messages(tmp_path: Path):
    from core.errors import InputError

    run = RunFolder(tmp_path / "run")
    run.write_config("name: x\nseed_everything: 3\n")
    run.write_data_description({"split": {"train": ["a"], "val": [], "test": ["b"]}, "root": "/d", "data": "phantom"})
    run.write_test_outputs([{"subject": "b", "sc/dice": 0.5}], {"n_subjects": 1})
    run.write_failure({"status": "failed", "error": "E", "reason": "r"})
    assert run.read_config() == {"name": "x", "seed_everything": 3}
    assert run.test_subjects() == ["b"] and run.read_data_description() == {"root": "/d", "data": "phantom"}
    assert run.read_test_summary() == {"n_subjects": 1} and run.read_failure()["reason"] == "r"
    run.clear_failure()
    assert run.read_failure() is None
    with pytest.raises(InputError, match=r"test_summary.json missing: not a cordbench run folder"):
        RunFolder(tmp_path / "nothing").read_test_summary()
    (run.split).write_text("{not json")
    with pytest.raises(InputError, match=r"unreadable split.json"):
        run.test_subjects()


def test_leaderboard_reads_the_old_sweep_identically(legacy: Path):
    """The leaderboard of the old folder equals what the old code computed from it."""
    from leaderboard.report import csv_frame
    from leaderboard.table import build_leaderboard

    lb = build_leaderboard(legacy, n_boot=200, seed=0, cost=True, morphometrics=True)
    got = csv_frame(lb).drop(columns=["latency_ms"])
    want = pd.read_csv(EXPECTED / "leaderboard.csv")
    roundtrip = pd.read_csv(pd.io.common.StringIO(got.to_csv(index=False)))  # same dtypes as the file
    # every column the old code wrote, same values (columns the leaderboard added since are extra)
    assert set(want.columns) <= set(roundtrip.columns)
    pd.testing.assert_frame_equal(roundtrip[list(want.columns)], want, check_exact=False, rtol=1e-9)
    levels = pd.read_csv(pd.io.common.StringIO(lb.morpho.levels.to_csv(index=False)))
    pd.testing.assert_frame_equal(levels, pd.read_csv(EXPECTED / "morphometrics_levels.csv"), rtol=1e-9)
    failed = pd.read_csv(pd.io.common.StringIO(lb.failed.to_csv(index=False)))
    pd.testing.assert_frame_equal(failed, pd.read_csv(EXPECTED / "failed.csv"))
    assert all(t.cached for t in lb.morpho.trials.values())  # from the old caches, no model run


def test_results_rows_rebuilt_from_old_trial_folders(legacy: Path):
    """sweeps.results rebuilds the same results.csv rows from the old trial folders as the old code;
    the finished trial whose folder is gone (7b46e_00001) keeps its earlier row, not a blank one."""
    from sweeps.config import load_sweep
    from sweeps.results import TrialInfo, build_table

    sweep = load_sweep(legacy / records.SWEEP_FILE, check_data=False, validate_all=False)
    res = pd.read_csv(legacy / "results.csv")
    infos = [
        TrialInfo(r.trial_id, r.status, {"model.name": r.model, "seed_everything": int(r.seed)})
        for r in res.itertuples()
    ]
    frame = build_table(infos, sweep.dims, sweep.run_config, str(legacy))
    got = pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False)))
    pd.testing.assert_frame_equal(got, pd.read_csv(EXPECTED / "results_rebuilt.csv"))
    # the three trials with a folder give the rows the old sweep driver wrote at the end
    kept = [t for t in res["trial_id"] if (legacy / "trials" / t).is_dir()]
    cols = [c for c in res.columns if c != "error"]
    pd.testing.assert_frame_equal(
        got.set_index("trial_id").loc[kept].reset_index()[cols],
        res.set_index("trial_id").loc[kept].reset_index()[cols],
        check_dtype=False,
    )


def test_main_dice_is_the_tasks_own_class_else_the_mean_over_classes():
    rows = [
        {"subject": "a", "sc/dice": 0.8, "gm/dice": 0.4, "wm/dice": 0.6},
        {"subject": "b", "sc/dice": 0.6, "gm/dice": 0.2, "wm/dice": 0.4},
    ]
    assert records.main_dice(rows, "sc") == pytest.approx(0.7)
    assert records.main_dice(rows, "gm") == pytest.approx(0.3)
    assert records.main_dice(rows, "levels") == pytest.approx((0.6 + 0.4) / 2)  # no class "levels": all classes
    assert records.main_dice([], "sc") is None and records.main_dice([{"subject": "a"}], "sc") is None
    assert [records.main_class(t) for t in ("sc", "gm", "canal", "levels")] == ["sc", "gm", "canal", None]
