"""Every numeric option of every command and every numeric config key has a declared range, checked
before anything runs: one line naming the option/key, the value and the range; nothing written.

Property-style: the out-of-range values are generated for each option from a fixed set of probes
(negative, zero, huge, NaN, ±inf, a fraction for integers) and every probe outside the declared
range must be refused; every probe inside it must get past the range check. In-process, in an
empty working folder that must stay empty (≈ 2 s for all ≈ 500 cases).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

from cordbench.cli import _command_modules, build_parser, main
from core.ranges import Range
from runs.config import RANGES
from tests.support.reliability import cli_error

#: A minimal argv per command; the numeric option under test is appended. ``{out}`` = the empty folder.
BASE = {
    "analyze": ["analyze", "bids", "-o", "{out}/study"],
    "download": ["download", "spine-generic", "{out}/sg"],
    "dti": ["dti", "--dwi", "d.nii.gz", "--bval", "b", "--bvec", "v", "-o", "{out}/dti.csv"],
    "export": ["export", "--ckpt", "c.ckpt", "-o", "{out}/exp"],
    "fit": ["fit", "-o", "{out}/run", "--logger.wandb.enabled=false"],
    "gmchallenge": ["gmchallenge", "gm", "--storage", "{out}/sw"],
    "leaderboard": ["leaderboard", "sweep", "--out", "{out}/lb"],
    "models": ["models"],
    "morphometrics": ["morphometrics", "--seg", "seg.nii.gz", "-o", "{out}/m.csv"],
    "phantom": ["phantom", "-o", "{out}/ph"],
    "predict": ["predict", "--ckpt", "c.ckpt", "-i", "x.nii.gz"],
    "slurm": ["slurm", "submit", "ci", "--dry-run", "--job-dir", "{out}/jobs"],
    "score": ["score", "pred", "--ref", "ref", "-o", "{out}/scored"],
    "stats": ["stats", "m.csv", "--x", "FA", "--y", "CSA", "-o", "{out}/st"],
    "sweep": ["sweep", "s.yaml"],
    "test": ["test", "--ckpt", "c.ckpt", "-o", "{out}/run"],
    "validate": ["validate", "--ckpt", "c.ckpt", "-o", "{out}/run"],
}
PROBES = ["-1", "0", "-1e30", "1e30", "nan", "inf", "-inf", "1.5", "4294967296"]


def _long(a: argparse.Action) -> str:
    return max(a.option_strings, key=len)


def _numeric_options() -> list[tuple[str, argparse.Action]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for name, p in sorted(sub.choices.items()):
        for act in p._actions:
            if getattr(act, "range", None) is not None:
                out.append((name, act))
            else:  # a number option without a declared range would escape the check
                assert act.type not in (int, float) or act.choices, (
                    f"{name} {act.option_strings}: use core.ranges.add_number"
                )
    return out


OPTIONS = _numeric_options()


def _parsed(text: str, integer: bool) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if not integer or (math.isfinite(v) and v.is_integer()) else None


def test_base_covers_every_command_and_all_numeric_options_are_declared():
    assert sorted(BASE) == sorted(_command_modules())
    assert len({n for n, _ in OPTIONS}) >= 8 and len(OPTIONS) >= 17


@pytest.mark.parametrize(
    "command,option", [(n, _long(a)) for n, a in OPTIONS], ids=[f"{n}{_long(a)}" for n, a in OPTIONS]
)
def test_out_of_range_option_values_are_one_line_and_write_nothing(command, option, tmp_path, capsys, monkeypatch):
    act = next(a for n, a in OPTIONS if n == command and _long(a) == option)
    rng: Range = act.range
    monkeypatch.chdir(tmp_path)
    base = [a.format(out=tmp_path) for a in BASE[command]]
    refused = 0
    for probe in PROBES:
        value = _parsed(probe, rng.integer)
        if value is not None and rng.contains(int(value) if rng.integer else value):
            continue
        err = cli_error(capsys, base + [f"{option}={probe}"])
        assert err.startswith(f"error: option {option}"), err
        assert rng.describe() in err, err  # the range is named
        refused += 1
    assert refused >= 3  # at least NaN, -inf and a fraction or a bound
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", sorted(RANGES))
def test_out_of_range_config_values_are_one_line_and_write_nothing(
    key, tmp_path, tmp_path_factory, capsys, monkeypatch
):
    rng = RANGES[key]
    cfg_dir = tmp_path_factory.mktemp("cfg")
    monkeypatch.chdir(tmp_path)
    listed = key in ("data.patch_size", "data.crop", "data.spacing")
    refused = 0
    for probe in ["-1", "0", "-1.0e+30", "1.0e+30", ".nan", ".inf", "-.inf", "0.5", "1.5", "4294967296"]:
        value = float(probe.replace(".nan", "nan").replace(".inf", "inf"))
        if rng.contains(int(value) if value.is_integer() and rng.integer else value):
            continue
        text = f"[{probe},32]" if listed else probe
        extra = ["--data.split.method=kfold"] if key == "data.split.fold" else []
        if "." in key:
            setting = [f"--{key}={text}"]
        else:  # a top-level key (seed_everything): from a config file
            (cfg_dir / "c.yaml").write_text(f"{key}: {text}\n")
            setting = ["-c", str(cfg_dir / "c.yaml")]
        err = cli_error(capsys, ["fit", "-o", str(tmp_path / "run"), "--logger.wandb.enabled=false", *extra, *setting])
        assert f"key {key!r}" in err, err
        refused += 1
    assert refused >= 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["fit", "--max-epochs", "-1"], "option --max-epochs = -1 is out of range: must be an integer in [1, 1000000]"),
        (["fit", "--max-epochs", "0"], "option --max-epochs = 0 is out of range"),
        (["fit", "--trainer.max_epochs=0"], "key 'trainer.max_epochs' = 0 is out of range"),
        (["fit", "--data.batch_size=0"], "key 'data.batch_size' = 0 is out of range: must be an integer in [1, 65536]"),
        (["fit", "--model.lr=-1"], "key 'model.lr' = -1.0 is out of range: must be a number > 0"),
        (
            ["fit", "--seed", "4294967296"],
            "option --seed = 4294967296 is out of range: must be an integer in [0, 4294967295]",
        ),
        (["fit", "--seed=-3"], "option --seed = -3 is out of range"),
        (
            ["fit", "--data.split.val_fraction=-0.1"],
            "key 'data.split.val_fraction' = -0.1 is out of range: must be a number in [0, 1)",
        ),
        (["phantom", "-o", "ph", "--seed", "-1"], "option --seed = -1 is out of range"),
        (["models", "--num-classes", "0"], "option --num-classes = 0 is out of range: must be an integer in [1, 1024]"),
        (["models", "--in-channels", "0"], "option --in-channels = 0 is out of range"),
        (["morphometrics", "--seg", "s", "-o", "m.csv", "--smooth", "-5"], "option --smooth = -5.0 is out of range"),
        (["leaderboard", "s", "--alpha", "2"], "option --alpha = 2.0 is out of range: must be a number in (0, 1)"),
    ],
)
def test_examples_of_the_issue(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "fit":
        argv = argv + ["-o", str(tmp_path / "run"), "--logger.wandb.enabled=false"]
    err = cli_error(capsys, argv)
    assert expected in err, err
    assert list(tmp_path.iterdir()) == []


def test_in_range_values_pass_the_check(tmp_path, capsys, monkeypatch):
    """The declared ranges do not refuse the documented defaults and edges (a range that cannot pass is a bug)."""
    from runs.config import DEFAULTS, check_ranges

    check_ranges(DEFAULTS)
    monkeypatch.chdir(tmp_path)
    assert (
        main(["phantom", "-o", str(tmp_path / "ph"), "-n", "1", "--snr", "inf", "--stenosis-prob", "0", "--truth-only"])
        == 0
    )


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["fit", "--model.dropout=abc"], "key 'model.dropout' = 'abc' is out of range: must be a number in [0, 1)"),
        (
            ["sweep", "configs/sweeps/quickstart.yaml", "--check", "--override", "config.trainer.max_epochs=-1"],
            "key 'config': key 'trainer.max_epochs' = -1 is out of range: must be an integer in [1, 1000000]",
        ),
        (["fit", "--seed", "1.5"], "option --seed: '1.5' is not an integer (must be an integer in [0, 4294967295])"),
    ],
)
def test_red_team_numbers(argv, expected, tmp_path, capsys, monkeypatch):
    """Accepted before (a non-number dropout; a sweep training forever) or a usage dump (--seed 1.5)."""
    if argv[0] == "fit":
        argv = argv + ["-o", str(tmp_path / "run"), "--logger.wandb.enabled=false"]
    else:
        argv[1] = str(Path(__file__).resolve().parents[1] / argv[1])
        argv += ["--storage", str(tmp_path / "sweeps")]
    err = cli_error(capsys, argv)
    assert expected in err, err
    assert list(tmp_path.iterdir()) == []
