"""The mutation check's catalogue (``tests/mutations/``) still matches the code.

``make mutations`` is too slow for the default run; this fast test keeps its catalogue honest in
CI: every mutation's pattern occurs exactly once in its file, so moving or rewriting guarded code
without updating ``tests/mutations/catalogue.py`` fails here, not silently in the mutation run.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "mutations"))

from catalogue import MUTATIONS  # noqa: E402
from run import check_patterns, main  # noqa: E402

AUDIT = [
    "metrics-spacing-dropped",
    "hd95-pooled",
    "fn-from-npred",
    "csa-cos-area",
    "tangent-axes-swapped",
    "soft-threshold",
    "fisher-n1-twice",
    "fisher-one-sided-p",
    "fisher-ci-level",
    "bootstrap-range",
    "holm-multipliers",
    "bids-label-key-no-session",
    "bids-label-key-no-datatype",
    "writeback-half-voxel",
    "xca-softmax-axis",
    "xca-temperature",
    "resume-metrics-lt",
    "resume-report-lt",
    "finished-record-ignored",
    "mirrored-target",
]


def test_catalogue_matches_the_code():
    problems = check_patterns(REPO, MUTATIONS)
    assert not problems, "update tests/mutations/catalogue.py:\n" + "\n".join(problems)


def test_catalogue_covers_the_audit_and_is_well_formed():
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names)) >= 20
    assert set(AUDIT) <= set(names)
    for m in MUTATIONS:
        assert m.old != m.new and m.tests, m.name
        assert all(not Path(t).name.startswith("test_mutations") for t in m.tests), m.name


def test_not_collected_by_pytest():
    """The runner and catalogue are not test modules (pytest collects ``test_*.py`` / ``*_test.py``)."""
    files = [p.name for p in (REPO / "tests" / "mutations").glob("*.py")]
    assert files and not [f for f in files if f.startswith("test_") or f.endswith("_test.py")]


def test_list(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in AUDIT)
    assert main(["--only", "no-such-mutation"]) == 2
