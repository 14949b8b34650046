"""Reliability, results attributed or pooled without checking how they were made: a checkpoint of another
network scored under the config's, real-data results of another checkpoint written into a run, trials
scored differently pooled into one leaderboard entry, and a failed subject (an infinite distance)
dropped so that the failing model looks better.

In-process through ``cordbench.cli.main``: hand-built checkpoints of the tiny networks (untrained; only
their hyper-parameters and weights matter here) and the planted sweep of ``tests/support/planted_sweep.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cordbench.cli import main
from tests.support.planted_sweep import SUBJECTS, make_sweep
from tests.support.reliability import cli_error, cord_mask, fit_args, make_bids, save, tree

LB = ["--no-wandb", "--no-cost", "--no-morphometrics", "--n-boot", "200"]


def checkpoint(path: Path, network: str) -> Path:
    """A real cordbench checkpoint of an untrained tiny ``network`` (cord task, 2D)."""
    import torch

    from lightning_modules.module import SegmentationModule

    torch.manual_seed(0)
    m = SegmentationModule(
        network=network, preset="tiny", num_classes=2, classes={"sc": [1]}, patch_size=[32, 32], task="sc"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": dict(m.hparams)}, path)
    return path


@pytest.fixture(scope="module")
def dilated(tmp_path_factory) -> Path:
    return checkpoint(tmp_path_factory.mktemp("dcnn") / "dilated.ckpt", "dilated_cnn")


# ------------------------------------------------------------------- checkpoints and their runs
def test_checkpoint_of_another_network_is_not_scored_under_the_configs(dilated, tmp_path, capsys):
    out = tmp_path / "run"
    err = cli_error(capsys, ["test", *fit_args(tmp_path / "bids", out)[1:], "--ckpt", str(dilated)])
    assert err == (
        f"error: {dilated}: checkpoint is a 'dilated_cnn' network (preset 'tiny') but the config names 'unet' "
        "(model.name), under which its scores would be recorded: give --model dilated_cnn or the run's own "
        "config (--config <run>/config.yaml)"
    )
    assert not out.exists()


def test_checkpoint_of_another_preset_is_recorded_with_its_own(tiny_ckpt, tmp_path, capsys):
    """The config's network at another size: the weights fix the preset; config.yaml records the checkpoint's."""
    from runs.config import load_yaml

    out = tmp_path / "run"
    argv = ["test", *fit_args(make_bids(tmp_path / "bids"), out, "--model.preset=small")[1:], "--ckpt", str(tiny_ckpt)]
    capsys.readouterr()
    assert main(argv) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: ")]
    assert err == [
        f"warning: {tiny_ckpt}: checkpoint is preset 'tiny' of 'unet'; recorded as such (the config said 'small')"
    ]
    assert load_yaml(out / "config.yaml")["model"]["preset"] == "tiny"


def test_real_results_of_another_checkpoint_do_not_replace_a_runs(dilated, tiny_ckpt, tmp_path, capsys):
    real = tmp_path / "real"
    rng = np.random.default_rng(0)
    save(real / "t2.nii.gz", (100 + 300 * cord_mask() + rng.normal(0, 20, (40, 40, 12))).astype(np.float32))
    save(real / "t2_seg-manual.nii.gz", cord_mask().astype(np.uint8))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: unet-tiny\n")
    own = Path(shutil.copy(tiny_ckpt, run / "checkpoints" / "best.ckpt"))
    assert main(["test", "--real", str(real), "--ckpt", str(own)]) == 0  # its own: into the run (default -o)
    before = tree(run)
    err = cli_error(capsys, ["test", "--real", str(real), "--ckpt", str(dilated), "-o", str(run)])
    assert err == (
        f"error: {run}: run folder of another checkpoint: {dilated} is not one of its checkpoints (best.ckpt), "
        "and its results here would be recorded as this run's: give -o a new folder, or score the run's own "
        "checkpoint"
    )
    assert tree(run) == before
    # the same weights under another path are the run's checkpoint (SHA-256)
    same = Path(shutil.copy(tiny_ckpt, tmp_path / "copy.ckpt"))
    assert main(["test", "--real", str(real), "--ckpt", str(same), "-o", str(run)]) == 0
    assert json.loads((run / "real_summary.json").read_text())["checkpoint"] == str(same)


# ------------------------------------------------------------------------------- the leaderboard
def _summary(sweep: Path, tid: str, **fields) -> None:
    (sweep / "trials" / tid / "test_summary.json").write_text(json.dumps({"n_subjects": len(SUBJECTS), **fields}))


def test_trials_scored_differently_are_not_pooled_into_one_entry(tmp_path, capsys):
    sweep = make_sweep(tmp_path / "sweep", {"unet": 0.0, "dilated_cnn": -0.02})  # seeds 0, 1: t000-t003
    for tid in ("t000", "t002", "t003"):
        _summary(sweep, tid, scoring="native", postprocess="largest_component")
    _summary(sweep, "t001", scoring="native", postprocess="none")  # unet, seed 1, scored raw
    out = tmp_path / "lb"
    assert main(["leaderboard", str(sweep), *LB, "--out", str(out)]) == 0
    table = pd.read_csv(out / "leaderboard.csv")
    assert sorted(table["entry"]) == [
        "dilated_cnn",
        "unet [model.postprocess=largest_component]",
        "unet [model.postprocess=none]",
    ]
    assert set(table["n_trials"]) == {1, 2}
    note = (
        "Entry unet split by scoring protocol: its trials differ in model.postprocess: largest_component / none; "
        "numbers made so are not pooled."
    )
    assert f"- {note}" in (out / "leaderboard.md").read_text()
    # trials scored alike stay one entry, with no note
    _summary(sweep, "t001", scoring="native", postprocess="largest_component")
    assert main(["leaderboard", str(sweep), *LB, "--out", str(tmp_path / "lb2")]) == 0
    assert sorted(pd.read_csv(tmp_path / "lb2" / "leaderboard.csv")["entry"]) == ["dilated_cnn", "unet"]
    assert "split by scoring protocol" not in (tmp_path / "lb2" / "leaderboard.md").read_text()
    # another scoring grid splits as well
    _summary(sweep, "t003", scoring="preprocessed", postprocess="largest_component")
    assert main(["leaderboard", str(sweep), *LB, "--out", str(tmp_path / "lb3")]) == 0
    assert sorted(pd.read_csv(tmp_path / "lb3" / "leaderboard.csv")["entry"]) == [
        "dilated_cnn [data.scoring=native]",
        "dilated_cnn [data.scoring=preprocessed]",
        "unet",
    ]
    # and another preprocessing (config.yaml)
    for tid, spacing in (("t000", "[0.5, 0.5, 0.5]"), ("t001", "[1.0, 1.0, 1.0]")):
        (sweep / "trials" / tid / "config.yaml").write_text(f"data:\n  spacing: {spacing}\n")
    assert main(["leaderboard", str(sweep), *LB, "--out", str(tmp_path / "lb4")]) == 0
    assert "unet [data.spacing=[0.5, 0.5, 0.5]]" in set(pd.read_csv(tmp_path / "lb4" / "leaderboard.csv")["entry"])


def test_infinite_distance_counts_as_the_worst_value_not_as_missing(tmp_path, capsys):
    """An empty prediction's hd95 = inf in one subject of the better model: scored as the worst hd95 of
    the leaderboard (the subject is kept), counted in ``n_failed`` and shown beside the mean."""
    sweep = make_sweep(tmp_path / "sweep", {"good": 0.05, "poor": 0.0}, seeds=(0,))
    path = sweep / "trials" / "t000" / "test_metrics.csv"  # good
    frame = pd.read_csv(path)
    frame.loc[3, "sc/hd95"] = np.inf
    frame.to_csv(path, index=False)
    values = {t: pd.read_csv(sweep / "trials" / t / "test_metrics.csv")["sc/hd95"] for t in ("t000", "t001")}
    worst = max(float(v[np.isfinite(v)].max()) for v in values.values())
    out = tmp_path / "lb"
    assert main(["leaderboard", str(sweep), "--metric", "hd95", *LB, "--out", str(out)]) == 0
    table = pd.read_csv(out / "leaderboard.csv").set_index("entry")
    assert table.loc["good", "n_subjects"] == len(SUBJECTS) and table.loc["good", "n_failed"] == 1
    assert table.loc["poor", "n_failed"] == 0
    assert table.loc["good", "mean"] == pytest.approx(values["t000"].replace(np.inf, worst).mean(), rel=1e-12)
    assert table.loc["good", "mean"] > values["t000"][np.isfinite(values["t000"])].mean()  # worse than dropping it
    md = (out / "leaderboard.md").read_text()
    assert "(1 failed)" in md
    assert (
        "Failures: 1 subject result(s) (trial × subject) with an infinite +inf value (e.g. an empty prediction's "
        f"distance) are scored as the worst value of the leaderboard, {worst:.4g}, not dropped; n_failed and "
        "'(k failed)' beside the mean count them per entry." in md
    )
