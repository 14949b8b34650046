"""Reliability, statistics inputs that are not what they seem: infinite cells, a column named twice, and
values near 1e300 (overflow in the line fit).

In-process through ``cordbench.cli.main`` (``cordbench stats``) on small hand-made tables.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cordbench.cli import main
from tests.support.reliability import cli_error

N = 24


@pytest.fixture(scope="module")
def xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(0.7, 0.05, N)
    return x, 2.0 * x + 0.1 + rng.normal(0, 0.02, N)


def _table(path: Path, x: np.ndarray, y: np.ndarray, scale: float = 1.0) -> Path:
    pd.DataFrame(
        {"subject": [f"sub-{i:02d}" for i in range(N)], "sex": ["M", "F"] * (N // 2), "FA": x * scale, "SAC": y * scale}
    ).to_csv(path, index=False)
    return path


def test_infinite_cell_is_refused_naming_file_and_column(xy, tmp_path, capsys):
    x, y = xy
    x = x.copy()
    x[[3, 7, 9]] = [np.inf, -np.inf, np.inf]
    table = _table(tmp_path / "m.csv", x, y)
    err = cli_error(capsys, ["stats", str(table), "--x", "FA", "--y", "SAC", "--no-levels", "-o", str(tmp_path / "o")])
    assert err == (
        f"error: {table}: column 'FA' has 3 infinite value(s), e.g. inf on line 5: an infinity is no measurement "
        "and would be dropped from n; write n/a for a missing value"
    )
    assert not (tmp_path / "o" / "correlations.csv").exists()


def test_column_named_twice_is_refused(xy, tmp_path, capsys):
    x, y = xy
    table = tmp_path / "m.csv"
    table.write_text("subject,FA,SAC,FA\n" + "".join(f"sub-{i:02d},{x[i]},{y[i]},{2 * x[i]}\n" for i in range(N)))
    err = cli_error(capsys, ["stats", str(table), "--x", "FA", "--y", "SAC", "--no-levels", "-o", str(tmp_path / "o")])
    assert err == (
        f"error: {table}: column 'FA' appears twice in the header (columns 2 and 4): which one is meant is "
        "unknown; rename or remove one"
    )


def test_values_near_1e300_give_the_right_line_without_warnings(xy, tmp_path, capsys):
    x, y = xy
    table = _table(tmp_path / "m.csv", x, y, scale=1e300)
    out = tmp_path / "o"
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["stats", str(table), "--x", "FA", "--y", "SAC", "--by", "sex", "--no-levels", "-o", str(out)]) == 0
    assert not [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert capsys.readouterr().err == ""
    corr = pd.read_csv(out / "correlations.csv").set_index(["by", "group"])
    slope, intercept = np.polyfit(x, y, 1)  # the same data at scale 1: slope unchanged, intercept × 1e300
    assert corr.loc[("all", "all"), "slope"] == pytest.approx(slope, rel=1e-9)
    assert corr.loc[("all", "all"), "intercept"] == pytest.approx(intercept * 1e300, rel=1e-9)
    assert corr.loc[("all", "all"), "r"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    m = np.arange(N) % 2 == 0
    assert corr.loc[("sex", "M"), "slope"] == pytest.approx(np.polyfit(x[m], y[m], 1)[0], rel=1e-9)
