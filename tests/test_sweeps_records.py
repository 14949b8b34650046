"""sweeps/records.py: results.csv keeps Ray's trial ids as text."""
from __future__ import annotations

from pathlib import Path

from sweeps.records import RESULTS_FILE, read_results_csv


def test_numeric_looking_trial_ids_stay_text(tmp_path: Path):
    """Searcher trial ids are 8 hex digits: '12345678' and '5e123456' must not become numbers."""
    from leaderboard.table import load_sweep

    (tmp_path / RESULTS_FILE).write_text("trial_id,status,model,sc_dice\n12345678,TERMINATED,unet,0.9\n"
                                         "5e123456,TERMINATED,unet,0.8\n")
    ids = read_results_csv(tmp_path / RESULTS_FILE)["trial_id"].tolist()
    assert ids == ["12345678", "5e123456"]
    assert load_sweep(tmp_path).results["trial_id"].tolist() == ["12345678", "5e123456"]
