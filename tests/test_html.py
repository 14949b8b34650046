"""The sortable HTML table (``core/html.py``): the one owner of the tables of the QC, leaderboard and
cohort analysis reports, and of the script that sorts them.

Fast: the reports are written from small synthetic inputs; the script runs under Node.js against a
small stand-in DOM built from the real markup (skipped without ``node``). The headless Chromium
tests of ``tests/test_qc.py`` and ``tests/test_leaderboard_sweep.py`` check the same in a browser.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import html


# ------------------------------------------------------------------------------------ the reports
@pytest.fixture
def tables(monkeypatch) -> list[str]:
    """Every table :func:`core.html.table` builds while the test runs."""
    built: list[str] = []
    real = html.table

    def spy(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(html, "table", spy)
    return built


def _one_owner(page: str, built: list[str]) -> None:
    """Every table of the page is one that core.html built, sorted by core.html's script only."""
    assert built and page.count("<table") == len(built) and all(t in page for t in built)
    from core.qc_decisions import QC_SCRIPT

    scripts = 1 + page.count(QC_SCRIPT)  # the sort script, and the QC decisions' where the page has them
    assert page.count(html.SORT_SCRIPT) == 1 and page.count(QC_SCRIPT) <= 1 and page.count("<script") == scripts
    assert html.SORT_CSS in page


def test_the_qc_report_tables_through_core_html(tables, tmp_path: Path):
    from evaluation.qc import write_report

    rows = [{"subject": "sub-00", "site": "a", "dice": 0.71}, {"subject": "sub-01", "site": "b", "dice": None}]
    page = write_report(rows, tmp_path / "index.html").read_text()
    _one_owner(page, tables)
    assert '<table id="qc" class="sortable">' in page and '<th data-key="panel">panel</th>' in page
    row = (
        '<tr><td class="s">sub-00</td><td data-v=""></td><td class="s">a</td><td data-v="0.71">0.71</td>'
        '<td class="qc" data-qc-subject="sub-00"></td></tr>'
    )
    assert row in page


def test_the_leaderboard_tables_through_core_html(tables, tmp_path: Path):
    from leaderboard.report import display_rows, to_html
    from leaderboard.table import build_leaderboard
    from tests.support.planted_sweep import make_sweep

    extra = [
        {
            "trial_id": "bad",
            "status": "ERROR",
            "error": "CUDA OOM",
            "model": "a",
            "preset": "tiny",
            "seed": 9,
            "data": "phantom",
            "task": "sc",
            "run_dir": "trials/bad",
        }
    ]
    lb = build_leaderboard(
        make_sweep(tmp_path, {"a": 0.0, "b": -0.05}, extra_rows=extra), n_boot=200, cost=False, morphometrics=False
    )
    page = to_html(lb)
    _one_owner(page, tables)
    assert len(tables) == 2 and "CUDA OOM" in tables[1]  # the ranking, then the failed trials
    heads, cells, _ = display_rows(lb)
    assert tables[0].startswith(
        '<table id="leaderboard" class="sortable"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    )
    for row in cells:  # every entry's cells as the other report formats show them
        assert all(f">{html.escape(c)}</td>" in tables[0] for c in row)


def test_the_cohort_report_tables_through_core_html(tables, tmp_path: Path):
    from analysis.morphometrics import LEVEL_COL
    from analysis.study_report import write_report

    metrics = pd.DataFrame(
        {"participant_id": ["sub-01", "sub-01", "sub-02"], LEVEL_COL: [2, 3, 2], "CSA": [70.5, 68.25, np.nan]}
    )
    subjects = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02"],
            "status": ["ok", "failed"],
            "reasons": ["", "no cord"],
            "warnings": ["", "tilted"],
        }
    )
    page = write_report(
        tmp_path,
        bids_dir="bids",
        seg_source="manual",
        metrics=metrics,
        subjects=subjects,
        stats=None,
        boxplot=None,
        x="CSA",
        y="FA",
        by=[],
        seconds=1.0,
        workers=0,
        address=None,
    ).read_text()
    _one_owner(page, tables)
    assert len(tables) == 4  # failed subjects, QC decisions (one row per subject), level summary, warnings
    for wanted in ("no cord", 'data-qc-subject="sub-02"', "70.5 (n=1)", "tilted"):
        assert sum(wanted in t for t in tables) == 1, wanted


# ------------------------------------------------------------------------------------ the markup
def test_cells_sort_on_their_value_and_missing_values_are_empty():
    assert html.cell(0.25, 0.25) == '<td data-v="0.25">0.25</td>'
    assert html.cell("3 M", np.int64(3_000_000)) == '<td data-v="3000000">3 M</td>'
    for missing in (None, float("nan"), np.float32("nan"), float("inf")):
        assert html.cell("", missing) == '<td data-v=""></td>'
    assert html.cell("a<b", cls="s") == '<td class="s">a&lt;b</td>'
    assert html.cell('<img src="x.png">', "", markup=True) == '<td data-v=""><img src="x.png"></td>'
    assert html.table(["a", "b"], [[html.cell(1)], [html.cell(2)]], row_classes=["best", ""], sortable=False) == (
        '<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr class="best"><td>1</td></tr>'
        "<tr><td>2</td></tr></tbody></table>"
    )
    with pytest.raises(ValueError):
        html.table(["a", "b"], [], keys=["a"])


# ------------------------------------------------------------------------------------ the script
class _Tables(HTMLParser):
    """The tables of a page as {class, heads: [{key, text}], rows: [[{v, text}]]} (what the script reads)."""

    def __init__(self, page: str):
        super().__init__()
        self.tables: list[dict] = []
        self._cell: dict | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append({"class": a.get("class", ""), "heads": [], "rows": []})
        elif tag == "th":
            self._cell = {"key": a.get("data-key"), "text": ""}
            self.tables[-1]["heads"].append(self._cell)
        elif tag == "tr" and self.tables[-1]["heads"] and self._in_body:
            self.tables[-1]["rows"].append([])
        elif tag == "td":
            self._cell = {"v": a.get("data-v"), "text": ""}
            self.tables[-1]["rows"][-1].append(self._cell)
        elif tag == "tbody":
            self._in_body = True

    _in_body = False

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self._cell = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


_DOM = """
const spec = JSON.parse(require("fs").readFileSync(0, "utf8"));
function el(attrs, text) {
  const cls = new Set();
  return {textContent: text, getAttribute: (k) => (k in attrs && attrs[k] !== null ? attrs[k] : null),
          classList: {add: (c) => cls.add(c), remove: (...cs) => cs.forEach((c) => cls.delete(c)),
                      contains: (c) => cls.has(c)},
          listeners: [], addEventListener(kind, f) { this.listeners.push(f); }, cls};
}
const tables = spec.tables.filter((t) => t.class === "sortable").map((t) => {
  const rows = t.rows.map((r, i) => ({id: i, cells: r.map((c) => el({"data-v": c.v}, c.text))}));
  const body = {rows: rows.slice(), appendChild(r) { this.rows.splice(this.rows.indexOf(r), 1); this.rows.push(r); }};
  return {tHead: {rows: [{cells: t.heads.map((h) => el({"data-key": h.key}, h.text))}]}, tBodies: [body]};
});
global.window = {location: {hash: spec.hash}};
global.document = {querySelectorAll: (q) => (q === "table.sortable" ? tables : [])};
eval(spec.script);
for (const c of spec.clicks) tables[0].tHead.rows[0].cells[c].listeners.forEach((f) => f());
const heads = tables.map((t) => t.tHead.rows[0].cells.map((h) => [...h.cls].join(" ")));
console.log(JSON.stringify({order: tables.map((t) => t.tBodies[0].rows.map((r) => r.id)), heads}));
"""


def _sorted(page: str, hash_: str = "", clicks: tuple[int, ...] = ()) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed")
    script = html.SORT_SCRIPT.removeprefix("<script>").removesuffix("</script>")
    spec = {"tables": _Tables(page).tables, "hash": hash_, "clicks": list(clicks), "script": script}
    out = subprocess.run([node, "-e", _DOM], input=json.dumps(spec), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def qc_page(tmp_path: Path) -> str:
    from evaluation.qc import write_report

    rows = [
        {"subject": f"sub-{i:02d}", "site": "abcd"[i], "dice": d, "hd95_mm": h}
        for i, (d, h) in enumerate([(0.71, 1.0), (0.93, 2.0), (0.85, 3.0), (float("nan"), None)])
    ]
    return write_report(rows, tmp_path / "index.html").read_text()


@pytest.mark.parametrize(
    "hash_, order",
    [
        ("#sort=dice:desc", [1, 2, 0, 3]),  # empty below every number: last when descending
        ("#sort=dice:asc", [3, 0, 2, 1]),
        ("#sort=dice", [3, 0, 2, 1]),
        ("#sort=site:desc", [3, 2, 1, 0]),  # text
        ("#sort=3-desc", [1, 2, 0, 3]),  # by index (column 3 = dice: subject, panel, site, dice)
        ("#sort=hd95_mm:desc", [2, 1, 0, 3]),
        ("#sort=nothing:desc", [0, 1, 2, 3]),
    ],
)
def test_the_url_sorts_the_first_table(qc_page: str, hash_: str, order: list[int]):
    got = _sorted(qc_page, hash_)
    assert got["order"] == [order]


def test_a_click_sorts_ascending_then_descending(qc_page: str):
    assert _sorted(qc_page, clicks=(3,))["order"] == [[3, 0, 2, 1]]
    got = _sorted(qc_page, clicks=(3, 3))
    assert got["order"] == [[1, 2, 0, 3]] and got["heads"][0] == ["", "", "", "desc", "", ""]


def test_numbers_come_before_text_and_only_the_first_table_follows_the_url():
    col = [html.cell(v) for v in ("b", "10", "9", "", "a")]
    first = html.table(["x"], [[c] for c in col])
    second = html.table(["x"], [[c] for c in col])
    got = _sorted(first + second, "#sort=x:asc")
    assert got["order"] == [[3, 2, 1, 4, 0], [0, 1, 2, 3, 4]]


def test_the_leaderboard_sorts_by_column_index_as_its_url_says(tmp_path: Path):
    """``leaderboard.html#sort=<index>-desc`` (docs/leaderboard.md) sorts the ranking, not the other tables."""
    from leaderboard.report import display_rows, to_html
    from leaderboard.table import build_leaderboard
    from tests.support.planted_sweep import make_sweep

    lb = build_leaderboard(
        make_sweep(tmp_path, {"a": 0.0, "b": -0.05, "c": 0.02}), n_boot=200, cost=False, morphometrics=False
    )
    heads, _, _ = display_rows(lb)
    col = heads.index("params")
    got = _sorted(to_html(lb), f"#sort={col}-desc")
    by_params = lb.table.reset_index(drop=True).sort_values("params", ascending=False, kind="stable")
    assert got["order"][0] == list(by_params.index) and got["heads"][0][col] == "desc"
