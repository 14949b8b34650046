"""Reliability, YAML the loader would accept but the user did not mean: duplicate keys, empty, folder
and binary configs, an alias bomb, and a randomisation block switched off.

In-process through ``cordbench.cli.main``; every YAML the tool reads goes through ``core.yamlio``
(checked on the sources below), so one case per command stands for every reader.
"""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from pathlib import Path

import pytest

from cordbench.cli import main
from core import yamlio
from tests.support.layout import CODE_FOLDERS
from tests.support.reliability import cli_error

REPO = Path(__file__).resolve().parents[1]


def _bomb(levels: int = 9) -> str:
    """A "billion laughs" document: 9 levels of 9 aliases each expand to 9⁹ ≈ 3.9e8 strings."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_duplicate_key_in_a_run_config_is_refused_with_both_lines(tmp_path, capsys):
    cfg = tmp_path / "dup.yaml"
    cfg.write_text("trainer:\n  max_epochs: 1\n  max_epochs: 2\n")
    err = cli_error(capsys, ["fit", "-c", str(cfg), "-o", str(tmp_path / "run")])
    assert err == (
        f"error: {cfg}: duplicate key 'trainer.max_epochs' on lines 2 and 3 (a YAML loader keeps the last "
        "silently); keep one"
    )
    assert not (tmp_path / "run").exists()


def test_duplicate_key_in_a_sweep_config_is_refused(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: dup\nsearch:\n  num_samples: 3\n  num_samples: 2\n")
    err = cli_error(capsys, ["sweep", "--check", str(sweep)])
    assert err == (
        f"error: {sweep}: duplicate key 'search.num_samples' on lines 3 and 4 (a YAML loader keeps the last "
        "silently); keep one"
    )


@pytest.mark.parametrize(
    "kind,make,problem",
    [
        (
            "empty",
            lambda p: p.write_bytes(b""),
            "config file is empty (0 bytes): nothing to read (the defaults are not assumed)",
        ),
        ("comments", lambda p: p.write_text("# nothing here\n\n"), "config file holds no YAML document"),
        ("folder", lambda p: p.mkdir(), "config file is a folder, not a YAML file"),
        (
            "binary",
            lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
            "config file is a binary file, not YAML text (NUL byte at offset 8)",
        ),
        (
            "latin1",
            lambda p: p.write_bytes(b"name: caf\xe9\n"),
            "config file is not UTF-8 text, not a YAML file (byte 0xe9 at offset 9)",
        ),
    ],
)
def test_config_that_is_no_yaml_text_is_one_line(tmp_path, capsys, kind, make, problem):
    cfg = tmp_path / "c.yaml"
    make(cfg)
    err = cli_error(capsys, ["fit", "-c", str(cfg), "-o", str(tmp_path / "run")])
    assert err.startswith(f"error: {cfg}: {problem}"), err
    assert not (tmp_path / "run").exists()


def test_alias_bomb_is_refused_before_the_object_is_built(tmp_path, capsys):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(_bomb())
    tracemalloc.start()
    t0 = time.perf_counter()
    err = cli_error(capsys, ["fit", "-c", str(cfg), "-o", str(tmp_path / "run")])
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert err == (
        f"error: {cfg}: YAML aliases expand to more than {yamlio.MAX_NODES} nodes (an alias bomb?): "
        "refused before building it"
    )
    assert seconds < 5 and peak < 50e6, (seconds, peak)  # expanded, it would be ~3.9e8 strings
    # the same aliases a few levels deep are fine: a small bound, not a ban on aliases
    assert yamlio.loads(_bomb(levels=2))["c"][0][0] == ["lol"] * 9


def test_duplicate_key_inside_an_override_value_is_refused(tmp_path, capsys):
    err = cli_error(capsys, ["fit", "-o", str(tmp_path / "run"), "--model.options={depth: 2, depth: 3}"])
    assert err == (
        "error: override model.options: duplicate key 'depth' on line 1 (a YAML loader keeps the last "
        "silently); keep one"
    )


def test_randomisation_block_switched_off_is_honoured(tmp_path, capsys):
    """``enabled: false`` in a --randomise-config file: no randomisation (it used to randomise anyway)."""
    off = tmp_path / "off.yaml"
    off.write_text("enabled: false\nsnr_min: 5\n")
    on = tmp_path / "on.yaml"
    on.write_text("enabled: true\nsnr_min: 5\n")
    args = ["phantom", "-n", "1", "--truth-only", "--randomise-config"]
    cohort = "derivatives/phantom-truth/cohort.json"
    assert main([*args, str(off), "-o", str(tmp_path / "off")]) == 0
    assert "randomise" not in json.loads((tmp_path / "off" / cohort).read_text())["options"]
    assert main([*args, str(on), "-o", str(tmp_path / "on")]) == 0
    assert json.loads((tmp_path / "on" / cohort).read_text())["options"]["randomise"]["snr_min"] == 5
    err = cli_error(capsys, [*args, str(off), "--randomise", "-o", str(tmp_path / "both")])
    assert err == f"error: {off}: key 'enabled' is false but --randomise asks for randomisation: drop one of them"


def test_every_yaml_read_goes_through_core_yamlio():
    """The one owner: no module parses YAML itself (``yaml.safe_load``/``load``/``SafeLoader``) but core/yamlio.py."""
    pattern = re.compile(r"\byaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all|SafeLoader)\b")
    offenders = [
        str(p.relative_to(REPO))
        for pkg in CODE_FOLDERS
        for p in sorted((REPO / pkg).rglob("*.py"))
        if p != REPO / "core" / "yamlio.py" and pattern.search(p.read_text())
    ]
    assert not offenders, offenders
