"""sweeps/records.py: results.csv keeps Ray's trial ids as text."""

from __future__ import annotations

from pathlib import Path

from sweeps.records import RESULTS_FILE, read_results_csv


def test_numeric_looking_trial_ids_stay_text(tmp_path: Path):
    """Searcher trial ids are 8 hex digits: '12345678' and '5e123456' must not become numbers."""
    from leaderboard.table import load_sweep

    (tmp_path / RESULTS_FILE).write_text(
        "trial_id,status,model,sc_dice\n12345678,TERMINATED,unet,0.9\n5e123456,TERMINATED,unet,0.8\n"
    )
    ids = read_results_csv(tmp_path / RESULTS_FILE)["trial_id"].tolist()
    assert ids == ["12345678", "5e123456"]
    assert load_sweep(tmp_path).results["trial_id"].tolist() == ["12345678", "5e123456"]


# ------------------------------------------------------------------------------ the main metric
def test_results_csv_and_the_trials_last_report_take_the_main_metric_from_records(tmp_path: Path, monkeypatch):
    """``test_dice`` has one definition, :func:`sweeps.records.main_dice`: replaced there, both
    results.csv (:mod:`sweeps.results`) and the trial's last report (:mod:`sweeps.trainable`, which
    DDP trials share) change with it; a copy of the definition anywhere else would not."""
    import runs.runner
    import sweeps.trainable as T
    from runs.config import DEFAULTS
    from runs.runner import RunResult
    from sweeps import records
    from sweeps.results import TrialInfo, build_table
    from tests.support.sweep_trials import FakeSession, fake_trial, trial_setup

    asked: list[tuple[str, int]] = []

    def main_dice(frame, task):  # stands in for the definition: a value no copy of it would give
        asked.append((task, len(frame)))
        return 0.4321

    monkeypatch.setattr(records, "main_dice", main_dice)
    sweep = tmp_path / "results"
    fake_trial(sweep, "a_00000", [0.5, 0.7, 0.9], [0.2, 0.6, 0.4], task="gm")
    frame = build_table([TrialInfo("a_00000", "TERMINATED", {})], [], DEFAULTS, str(sweep))
    assert frame["test_dice"].tolist() == [0.4321] and asked == [("gm", 3)]

    test_records = [{"subject": "sub-01", "sc/dice": 0.6}, {"subject": "sub-02", "sc/dice": 0.8}]

    def fit(cfg, callbacks=(), ckpt_path=None, test=True):
        return RunResult(out=Path(cfg["output_dir"]), val={"val/dice": 0.8}, test_records=test_records, seconds=1.0)

    FakeSession("t0").install(monkeypatch)
    monkeypatch.setattr(runs.runner, "fit", fit)
    T.train_trial({}, trial_setup(tmp_path / "trial"))
    record = records.read_trial_record(tmp_path / "trial" / records.TRIALS_DIR / "t0")
    assert record["last_report"] == {"val_dice": 0.8, "test_dice": 0.4321} and asked[1:] == [("sc", 2)]
