"""The GM-challenge protocol: the sweep validates, runs end to end on the challenge-named fixture
(real Ray Tune trials, tiny presets) and prints the challenge-layout table; no data → how to get it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cordbench.cli import main

TINY = [
    "config.model.preset=tiny",
    "config.data.patch_size=[48,48]",
    "config.data.batch_size=4",
    "config.data.samples_per_volume=4",
    "config.data.queue_length=16",
    "config.trainer.max_epochs=1",
    "config.trainer.limit_train_batches=2",
    "config.logger.wandb.enabled=false",
    "config.data.split.val_fraction=0.34",
    "space.data.split.fold.grid=[0]",
    "resources.cpu=1",
    "search.max_concurrent_trials=2",
]


def test_protocol_validates(gm_fixture, tmp_path: Path, capsys):
    root, _ = gm_fixture
    assert main(["gmchallenge", str(root), "--check", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "8 trial(s)" in out  # 2 models x 4 folds


def test_without_data_says_how_to_get_it(tmp_path: Path, capsys):
    assert main(["gmchallenge", str(tmp_path / "nowhere")]) == 2
    cap = capsys.readouterr()
    assert f"cordbench download gmchallenge {tmp_path / 'nowhere'}" in cap.err and not cap.out.strip()


@pytest.mark.slow
def test_protocol_runs_and_prints_the_challenge_table(gm_fixture, tmp_path: Path, capsys):
    from leaderboard.gmchallenge_table import METRICS, sweep_runs

    root, _ = gm_fixture
    args = ["gmchallenge", str(root), "--storage", str(tmp_path)]
    for o in TINY:
        args += ["--override", o]
    assert main(args) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.split()[:4] == ["model", "reference", "site", "n"])
    assert header.split()[4:] == [name for name, _ in METRICS]
    table = pd.read_csv(tmp_path / "gmchallenge_perone" / "gmchallenge_table.csv")
    assert sorted(table["model"].unique()) == ["dilated_cnn", "sattisunet"]
    runs = sweep_runs(tmp_path / "gmchallenge_perone")
    assert len(runs) == 2
    # the consensus row over all sites is the mean of the test subjects' native-grid scores
    for run in runs:
        model = __import__("yaml").safe_load((run / "config.yaml").read_text())["model"]["name"]
        per_subject = pd.read_csv(run / "test_metrics.csv")
        row = table[(table["model"] == model) & (table["reference"] == "consensus") & (table["site"] == "all")]
        assert float(str(row["Dice"].iloc[0]).split(" ")[0]) == pytest.approx(per_subject["gm/dice"].mean(), abs=6e-4)
        assert float(str(row["SMD"].iloc[0]).split(" ")[0]) == pytest.approx(per_subject["gm/skel_md"].mean(), abs=6e-4)
        raters = table[(table["model"] == model) & (table["reference"].str.startswith("rater"))]
        assert list(raters["reference"]) == ["raters (mean)", "rater1", "rater2", "rater3", "rater4"]
        want = np.mean([per_subject[f"rater{r}/gm/dice"].mean() for r in range(1, 5)])
        assert float(str(raters["Dice"].iloc[0]).split(" ")[0]) == pytest.approx(want, abs=6e-4)
        sites = set(table[(table["model"] == model) & (table["reference"] == "consensus")]["site"]) - {"all"}
        assert sites == {s.split("-")[0] for s in per_subject["subject"]}
