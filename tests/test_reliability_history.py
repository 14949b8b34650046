"""Reliability, round 3, class 2 (no earlier result deleted or overwritten) and the run-folder cases
of class 7 (a run whose records are gone, damaged or foreign), through the CLI on one tiny run.

One finished 1-epoch fit is shared by the module (copied by each test that changes it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cordbench.cli import main
from tests.support.reliability import cli_error, copy_run, cord_mask, fit_args, make_bids, save, tree


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny tree and one finished 1-epoch run."""
    base = tmp_path_factory.mktemp("history")
    root = make_bids(base / "bids")
    assert main(fit_args(root, base / "run")) == 0
    return root, base / "run"


# --------------------------------------------------------------------------- fit --resume, finished
def test_resume_of_a_finished_run_changes_nothing_and_more_epochs_append(trained, tmp_path, capsys):
    root, run = trained
    out = copy_run(run, tmp_path)
    before = tree(out)
    err = cli_error(capsys, fit_args(root, out, "--resume"))
    assert err == (
        f"error: {out}: the run already finished (1 of trainer.max_epochs=1 epochs in checkpoints/last.ckpt): "
        "nothing to resume, nothing changed; to train on, add --trainer.max_epochs=<more> to --resume"
    )
    assert tree(out) == before
    # with more epochs asked for, the run continues and metrics.csv keeps epoch 0's rows
    old = pd.read_csv(out / "metrics.csv")
    assert main(fit_args(root, out, "--resume", "--trainer.max_epochs=2")) == 0
    new = pd.read_csv(out / "metrics.csv")
    kept = old[old["epoch"] == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(new[new["epoch"] == 0].reset_index(drop=True)[kept.columns], kept)
    assert new["val/dice"].notna().sum() == 2 and {0, 1} <= set(new["epoch"])  # epoch 1 appended


# ------------------------------------------------------------------------------ class 7: run records
def test_resume_without_config_yaml_or_with_a_damaged_metrics_csv_is_refused(trained, tmp_path, capsys):
    root, run = trained
    out = copy_run(run, tmp_path)
    (out / "config.yaml").unlink()
    before = tree(out)
    err = cli_error(capsys, fit_args(root, out, "--resume", "--trainer.max_epochs=2"))
    assert err == (
        f"error: {out}: --resume needs the run's config.yaml, which is gone: without it the resumed run cannot "
        "be checked to be the same run; put it back, or start again with --overwrite"
    )
    assert tree(out) == before
    shutil.copy(run / "config.yaml", out / "config.yaml")
    with open(out / "metrics.csv", "a") as f:
        f.write("garbage\x00,\n")
    before = tree(out)
    err = cli_error(capsys, fit_args(root, out, "--resume", "--trainer.max_epochs=2"))
    assert err.startswith(f"error: {out}/metrics.csv: damaged at line 5 (a row that does not match the header epoch,")
    assert err.endswith("…): --resume keeps the per-epoch history in it; repair it or move it aside")
    assert tree(out) == before


def test_fit_ckpt_path_of_another_network_or_of_weights_only_is_refused_before_work(
    trained, tiny_ckpt, tmp_path, capsys
):
    root, run = trained
    last = run / "checkpoints" / "last.ckpt"
    out = tmp_path / "new"
    argv = fit_args(root, out, "--ckpt-path", str(last))
    argv[argv.index("unet")] = "sattisunet"
    err = cli_error(capsys, argv)
    assert err == (
        f"error: {last}: checkpoint of model 'unet' (preset 'tiny', task 'sc') but this run trains 'sattisunet' "
        "(preset 'tiny', task 'sc'): fit --ckpt-path continues a run of the same network"
    )
    err = cli_error(capsys, fit_args(root, out, "--ckpt-path", str(tiny_ckpt)))
    assert err == (
        f"error: {tiny_ckpt}: holds weights only (no optimizer_states, loops, epoch, global_step): fit --ckpt-path "
        "continues a training run from a full Lightning checkpoint such as <run>/checkpoints/last.ckpt"
    )
    assert not out.exists()


# ------------------------------------------------------------------------------ test --real re-run
def _real_set(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(n)
    for i in range(n):
        cord = cord_mask(radius=4.0 + i, shift=(i, -i))
        save(folder / f"t2_{i}" / "t2.nii.gz", (100 + 300 * cord + rng.normal(0, 20, cord.shape)).astype(np.float32))
        save(folder / f"t2_{i}" / "t2_seg-manual.nii.gz", cord.astype(np.uint8))
    return folder


def test_interrupted_test_real_rerun_keeps_the_earlier_real_results(trained, tmp_path, monkeypatch):
    """A Ctrl-C while the second image of a re-run is scored: the earlier real results stay whole
    (masks, CSV, summary); the re-run's masks were written aside and are swapped in only at the end."""
    import runs.real_eval as real_eval

    _, run = trained
    out = copy_run(run, tmp_path)
    ckpt = out / "checkpoints" / "best.ckpt"
    real = _real_set(tmp_path / "real", 2)
    assert main(["test", "--ckpt", str(ckpt), "--real", str(real)]) == 0
    names = ("real_metrics.csv", "real_summary.json", "real_predictions")
    before = {k: v for k, v in tree(out).items() if k.startswith(names)}
    assert len(before) == 4  # two masks, the CSV and the summary
    _real_set(tmp_path / "real", 3)  # a scan added: the re-run scores the set again
    score, calls = real_eval._score_image, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return score(*args, **kwargs)

    monkeypatch.setattr(real_eval, "_score_image", interrupted)
    assert main(["test", "--ckpt", str(ckpt), "--real", str(real)]) == 130 and len(calls) == 2
    assert {k: v for k, v in tree(out).items() if k.startswith(names)} == before
    monkeypatch.setattr(real_eval, "_score_image", score)
    assert main(["test", "--ckpt", str(ckpt), "--real", str(real)]) == 0  # completes: the new set swapped in
    assert len(pd.read_csv(out / "real_metrics.csv")) == 3 and len(list((out / "real_predictions").iterdir())) == 3
    assert json.loads((out / "real_summary.json").read_text())["n_subjects"] == 3
    assert not (out / ".real_predictions.part").exists()


# ------------------------------------------------------------------------------ predict --qc names
def test_predict_qc_of_inputs_sharing_a_base_name_keeps_both_panels(tiny_ckpt, image, tmp_path, capsys):
    a, b = tmp_path / "a" / "t2.nii.gz", tmp_path / "b" / "t2.nii.gz"
    for p in (a, b):
        p.parent.mkdir()
        shutil.copy(image, p)
    qc = tmp_path / "qc"
    assert main(["predict", "--ckpt", str(tiny_ckpt), "-i", str(a), str(b), "--qc", str(qc)]) == 0
    assert sorted(p.name for p in qc.glob("*.png")) == ["a_t2_label-sc_seg.png", "b_t2_label-sc_seg.png"]
    html = (qc / "index.html").read_text()
    assert "a_t2_label-sc_seg.png" in html and "b_t2_label-sc_seg.png" in html


# ------------------------------------------------------------------------------ results.csv rows
def test_results_csv_never_loses_a_finished_trials_row(tmp_path):
    """The owner of results.csv (``sweeps.results.build_table``, called on every trial event and by
    ``sweep --resume``): a trial folder deleted by hand keeps its earlier row (not a blank one), a
    finished trial Ray's restored state no longer lists keeps its row, an unfinished one is not kept."""
    from runs.config import DEFAULTS
    from sweeps.records import read_results_csv
    from sweeps.results import TrialInfo, build_table, write_table
    from tests.support.sweep_trials import fake_trial

    for tid, dice in (("t1", 0.8), ("t2", 0.7)):
        fake_trial(tmp_path, tid, [dice, dice], [dice])
    done = [TrialInfo(t, "TERMINATED", {}) for t in ("t1", "t2")] + [TrialInfo("t3", "RUNNING", {})]
    write_table(build_table(done, [], DEFAULTS, str(tmp_path)), str(tmp_path))
    first = read_results_csv(tmp_path / "results.csv").set_index("trial_id")
    assert first.loc["t2", "test_dice"] == pytest.approx(0.7) and first.loc["t2", "run_dir"] == "trials/t2"
    shutil.rmtree(tmp_path / "trials" / "t2")
    # resumed from an older snapshot: t1 unlisted; t3 gone from Ray's list (Ray starts it again)
    write_table(build_table(done[1:2], [], DEFAULTS, str(tmp_path)), str(tmp_path))
    again = read_results_csv(tmp_path / "results.csv").set_index("trial_id")
    assert list(again.index) == ["t1", "t2"]
    pd.testing.assert_frame_equal(again, first.loc[["t1", "t2"]])
