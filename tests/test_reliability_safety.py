"""Safety: checkpoints load weights only, no code runs from configs, outputs cannot escape their folder.

YAML safe loading itself is tested in ``tests/test_config.py::test_yaml_is_safe``.
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from core.errors import InputError
from tests.support.reliability import assert_intact, cli_error, fit_args, make_bids, previous_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_bids(tmp_path_factory) -> Path:
    return make_bids(tmp_path_factory.mktemp("safety") / "bids", n=3)


# -------------------------------------------------------------------------------- checkpoints
class _Payload:
    """Unpickling this calls ``open(marker, 'w')``: code execution if a loader trusts pickles."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil_ckpt(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"network": "unet", "x": _Payload(marker)}}, path)
    assert not marker.exists()
    return path, marker


def test_pickle_payload_checkpoint_refused_everywhere(evil_ckpt, tiny_bids, tmp_path, capsys):
    path, marker = evil_ckpt
    img = tiny_bids / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    line = cli_error(capsys, ["predict", "--ckpt", str(path), "-i", str(img), "-o", str(tmp_path / "p.nii.gz")])
    assert line.startswith(f"error: {path}: unsafe checkpoint: it holds pickled objects such as io.open"), line
    out = tmp_path / "run"
    before = previous_run(out)
    line = cli_error(capsys, ["test"] + fit_args(tiny_bids, out)[1:] + ["--ckpt", str(path)])
    assert line.startswith(f"error: {path}: unsafe checkpoint"), line
    line = cli_error(capsys, fit_args(tiny_bids, out, "--ckpt-path", str(path)))
    assert line.startswith(f"error: {path}: unsafe checkpoint"), line
    assert_intact(out, before)
    # Lightning's own loads (resume, test of the best checkpoint) go through the runner's CheckpointIO
    from runs.checkpoints import atomic_checkpoint_io

    with pytest.raises(Exception, match="Unsupported global|weights_only"):
        atomic_checkpoint_io().load_checkpoint(path, weights_only=False)
    assert not marker.exists()
    assert not (tmp_path / "p.nii.gz").exists()


# ----------------------------------------------------------------------- no code from config strings
SOURCE_DIRS = ("cordbench", "data_modules", "analysis", "lightning_modules", "sweeps", "benchmarks")


def _unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        kw = {k.arg: k.value for k in node.keywords}
        if isinstance(f, ast.Name) and f.id in ("eval", "exec", "compile", "__import__"):
            bad.append((node.lineno, f.id))
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            mod, name = f.value.id, f.attr
            if mod == "yaml" and name in ("load", "load_all", "unsafe_load", "full_load", "unsafe_load_all"):
                bad.append((node.lineno, f"yaml.{name}"))
            elif mod in ("pickle", "cloudpickle", "dill", "marshal") and name in ("load", "loads"):
                bad.append((node.lineno, f"{mod}.{name}"))
            elif mod == "torch" and name == "load":
                w = kw.get("weights_only")
                if not (isinstance(w, ast.Constant) and w.value is True):
                    bad.append((node.lineno, "torch.load without weights_only=True"))
            elif mod in ("np", "numpy") and name == "load":
                a = kw.get("allow_pickle")
                if a is not None and not (isinstance(a, ast.Constant) and a.value is False):
                    bad.append((node.lineno, "np.load(allow_pickle=...)"))
            elif mod in ("pd", "pandas") and name == "read_pickle":
                bad.append((node.lineno, "pd.read_pickle"))
    return bad


def test_no_eval_exec_or_unsafe_deserialisation_in_the_code():
    found = {}
    files = [p for d in SOURCE_DIRS for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 40
    for p in files:
        bad = _unsafe_calls(ast.parse(p.read_text(), filename=str(p)))
        if bad:
            found[str(p.relative_to(REPO))] = bad
    assert found == {}
    # the scanner itself finds what it looks for
    probe = "eval(s)\nyaml.load(t)\ntorch.load(p)\ntorch.load(p, weights_only=True)\npickle.loads(b)\n"
    assert [n for _, n in _unsafe_calls(ast.parse(probe))] == [
        "eval",
        "yaml.load",
        "torch.load without weights_only=True",
        "pickle.loads",
    ]


@pytest.mark.parametrize(
    "override, key",
    [
        ("--model.lr=__import__('os').system('touch {m}')", "model.lr"),
        ("--model.scheduler=__import__('os').system('touch {m}')", "model.scheduler"),
        ("--data.task=!!python/object/apply:os.system ['touch {m}']", "data.task"),
    ],
)
def test_config_strings_are_data_never_code(override, key, tiny_bids, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    line = cli_error(capsys, fit_args(tiny_bids, tmp_path / "run", override.format(m=marker)))
    assert key in line, line
    assert not marker.exists() and not (tmp_path / "run").exists()


# -------------------------------------------------------------------------- path escapes
@pytest.mark.parametrize("pid", ["sub-../../x", "sub-01/../../x", "../../x", "sub-a\\..\\b"])
def test_participant_id_that_is_a_path_rejected(pid, tiny_bids, tmp_path, capsys):
    root = shutil.copytree(tiny_bids, tmp_path / "bids")
    df = pd.read_csv(root / "participants.tsv", sep="\t", dtype=str)
    df.loc[df["participant_id"] == "sub-02", "participant_id"] = pid
    df.to_csv(root / "participants.tsv", sep="\t", index=False)
    for argv in (
        fit_args(root, tmp_path / "run"),
        ["analyze", str(root), "-o", str(tmp_path / "study"), "--workers", "0", "--no-progress"],
    ):
        line = cli_error(capsys, argv)
        assert line.startswith(f"error: {root / 'participants.tsv'}: participant_id not of the form"), line
    assert not (tmp_path / "run").exists() and not (tmp_path / "study").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bids"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("subject", "../../x"),
        ("subject", "sub-01/../../x"),
        ("session", "../ses-1"),
        ("datatype", "anat/../../.."),
        ("stem", "../../../etc/passwd"),
        ("subject", ".."),
    ],
)
def test_prediction_path_cannot_escape_the_derivatives_folder(field, value, tmp_path):
    from evaluation.native import prediction_path

    rec = dict(subject="sub-01", session=None, datatype="anat", stem="sub-01_T2w")
    good = prediction_path(tmp_path, SimpleNamespace(**rec), "SC")
    assert good == tmp_path / "derivatives/cordbench/sub-01/anat/sub-01_T2w_label-SC_seg.nii.gz"
    rec[field] = value
    with pytest.raises(InputError, match="cannot name an output file or folder"):
        prediction_path(tmp_path, SimpleNamespace(**rec), "SC")
    with pytest.raises(InputError, match="task '../x'"):
        prediction_path(
            tmp_path, SimpleNamespace(subject="sub-01", session=None, datatype="anat", stem="sub-01_T2w"), "../x"
        )


def test_analysis_outputs_cannot_escape(tmp_path):
    from analysis.study import StudyOptions, SubjectJob, process_subject

    out = tmp_path / "deep" / "out"
    with pytest.raises(InputError, match="subject id '../../x'"):
        process_subject(SubjectJob(subject="../../x"), StudyOptions(out_dir=str(out)))
    assert not (tmp_path / "x").exists() and not out.exists()


def test_run_name_cannot_escape_outputs(tiny_bids, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = cli_error(capsys, ["fit", "--data", "spine_generic", "--root", str(tiny_bids), "--name", "../../escaped"])
    assert "key 'name' must be a plain folder name" in line, line
    assert os.listdir(tmp_path) == []
