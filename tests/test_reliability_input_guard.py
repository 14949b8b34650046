"""The input guard of ``conftest.py`` (``tests/input_guard.py``) can fail, and sees every command.

The guard itself runs around every in-process command of the suite; these tests show it reports a
command that modifies an input (also when the command then fails) and leaves allowed outputs alone.
"""

from __future__ import annotations

import argparse

import pytest

from cordbench.cli import _command_modules
from tests.input_guard import INPUTS, guarded, snapshot


def test_every_command_has_its_inputs_declared():
    assert sorted(INPUTS) == sorted(_command_modules())


def test_guard_reports_a_command_writing_its_input(tmp_path):
    seg = tmp_path / "seg.nii.gz"
    seg.write_bytes(b"mask")

    def bad_run(args):
        seg.write_bytes(b"a CSV")
        return 0

    with pytest.raises(AssertionError, match=r"cordbench morphometrics modified its input seg .*\['\.'\]"):
        guarded("morphometrics", bad_run)(argparse.Namespace(seg=str(seg), levels=None, canal=None, out="o.csv"))

    def bad_then_fail(args):
        (tmp_path / "bids" / "participants.tsv").write_text("changed")
        raise RuntimeError("boom")

    (tmp_path / "bids").mkdir()
    (tmp_path / "bids" / "participants.tsv").write_text("participant_id\n")
    with pytest.raises(AssertionError, match=r"analyze modified its input bids_dir .*participants\.tsv"):
        guarded("analyze", bad_then_fail)(argparse.Namespace(bids_dir=str(tmp_path / "bids")))


def test_guard_allows_the_outputs_a_command_writes_inside_an_input_by_design(tmp_path):
    root = tmp_path / "bids"
    (root / "sub-01").mkdir(parents=True)
    (root / "sub-01" / "a.nii.gz").write_bytes(b"image")

    def predict_bids(args):
        out = root / "derivatives" / "cordbench" / "sub-01"
        out.mkdir(parents=True)
        (out / "mask.nii.gz").write_bytes(b"mask")
        return 0

    assert guarded("predict", predict_bids)(argparse.Namespace(ckpt=None, input=None, bids=str(root))) == 0
    assert "derivatives/cordbench/sub-01/mask.nii.gz" not in snapshot(root, INPUTS["predict"]["bids"])


def test_the_guard_is_installed_around_every_command():
    for mod in _command_modules().values():
        assert hasattr(mod.run, "__wrapped__")
