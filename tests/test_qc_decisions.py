"""QC decisions: marked in the QC report in headless Chromium, exported as exclude.yml, re-imported after a
reload, and read by ``cordbench analyze --exclude`` (the failed subjects left out, with the reason)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from core import yamlio
from core.qc_decisions import EXPORT_HEADER, export_origin
from evaluation.qc import write_report
from tests.support.reliability import cli_error
from tests.support.study import make_bids

SUBJECTS = ["sub-01", "sub-02", "sub-03", "sub-04"]


@pytest.fixture(scope="module")
def bids(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qcd") / "bids"
    make_bids(root, n=4, with_dwi=False)
    return root


def _decisions(b) -> dict:
    return b.eval(
        "Object.fromEntries(Array.from(document.querySelectorAll('td[data-qc-subject]')).map("
        "c => [c.getAttribute('data-qc-subject'), [c.querySelector('select').value, c.querySelector('input').value]]))"
    )


@pytest.mark.services
def test_mark_export_reload_import_then_analyze_excludes(bids: Path, tmp_path: Path):
    from cordbench.cli import main
    from tests.support.cdp import Browser

    rows = [{"subject": s, "dice": 0.9 - 0.1 * i} for i, s in enumerate(SUBJECTS)]
    report = write_report(rows, tmp_path / "qc" / "index.html", title="cordbench QC")
    b = Browser(tmp_path / "profile", tmp_path / "downloads")
    try:
        b.allow_downloads()
        b.open(report.as_uri())
        b.choose('td[data-qc-subject="sub-01"] select', "Pass")
        for sub, note in (("sub-02", "motion"), ("sub-03", "cord cut at C4")):
            b.choose(f'td[data-qc-subject="{sub}"] select', "Fail")
            b.type_into(f'td[data-qc-subject="{sub}"] input', note)
        marked = {"sub-01": ["Pass", ""], "sub-02": ["Fail", "motion"], "sub-03": ["Fail", "cord cut at C4"]}
        assert _decisions(b) == {**marked, "sub-04": ["", ""]}
        b.reload()  # the decisions survive in local storage
        assert _decisions(b) == {**marked, "sub-04": ["", ""]}
        assert "Fail 2" in b.eval("document.getElementById('qc-status').textContent")
        b.click("#qc-export")
        exported = tmp_path / "downloads" / "exclude.yml"
        deadline = time.monotonic() + 30
        while not exported.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = exported.read_text()
        assert text.startswith(EXPORT_HEADER) and export_origin(text) == f"cordbench QC ({report.as_uri()})"
        assert yamlio.loads(text) == {"qc": ["sub-02", "sub-03"]}  # spine-generic's format
        assert yamlio.item_comments(text) == {"sub-02": "Fail: motion", "sub-03": "Fail: cord cut at C4"}
        assert "# Pass: sub-01" in text
        b.eval("localStorage.clear()")
        b.reload()
        assert _decisions(b) == {s: ["", ""] for s in SUBJECTS}
        b.set_file("#qc-import", exported)  # re-import the export
        b.wait_for("document.getElementById('qc-status').textContent.includes('imported')")
        assert _decisions(b) == {**marked, "sub-04": ["", ""]}
    finally:
        b.close()

    out = tmp_path / "study"
    assert (
        main(["analyze", str(bids), "-o", str(out), "--workers", "0", "--no-progress", "--exclude", str(exported)]) == 0
    )
    subjects = pd.read_csv(out / "subjects.csv").set_index("participant_id")
    assert subjects.loc[["sub-02", "sub-03"], "status"].tolist() == ["excluded", "excluded"]
    assert "Fail: motion" in subjects.loc["sub-02", "reasons"]
    assert "Fail: cord cut at C4" in subjects.loc["sub-03", "reasons"]
    assert subjects.loc[["sub-01", "sub-04"], "status"].tolist() == ["partial", "partial"]  # no DWI
    metrics = pd.read_csv(out / "metrics.csv")
    assert sorted(metrics["participant_id"].unique()) == ["sub-01", "sub-04"]
    html = (out / "report.html").read_text()
    assert "Fail: cord cut at C4" in html and "exported from the QC report cordbench QC" in html
    assert 'id="qc-decisions"' in html and html.count("data-qc-subject=") == 4  # the study's report takes decisions too


def test_malformed_exclude_file_is_one_line_naming_it(bids: Path, tmp_path: Path, capsys):
    out = ["-o", str(tmp_path / "study"), "--workers", "0", "--no-progress"]
    for name, text, words in (
        ("list.yml", "- sub-01\n- sub-02\n", "must map each key to a list"),
        ("nested.yml", "qc:\n- {sub-01: motion}\n", "subject ids or file names"),
        ("bad.yml", "qc: [sub-01\n", "invalid YAML"),
        ("empty.yml", "", "empty"),
    ):
        (tmp_path / name).write_text(text)
        err = cli_error(capsys, ["analyze", str(bids), *out, "--exclude", str(tmp_path / name)])
        assert name in err and words in err, err
    err = cli_error(capsys, ["analyze", str(bids), *out, "--exclude", str(tmp_path / "missing.yml")])
    assert "missing.yml" in err and "not found" in err
    assert not (tmp_path / "study" / "subjects.csv").exists()
