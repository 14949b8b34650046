"""The sortable HTML table of every report (QC, leaderboard, cohort analysis): markup, sort values, script.

A table is ``<table class="sortable">`` with one header row and ``<td>`` cells; a cell's
``data-v`` attribute, when it has one, is the value it sorts on (its text otherwise). Sorting, in
:data:`SORT_SCRIPT` (inline, no network): a click on a header sorts by that column, a second click
reverses; empty values sort below every number, numbers below text (so they come last in a
descending sort); numbers compare as numbers, text in the locale's order. The page's URL can sort
its first sortable table on load: ``#sort=<column>[:asc|:desc]`` (``-desc`` also works), the
column named by its ``data-key``, its header text, or its 0-based index.

Pure Python (the ground layer): each report formats its own cells and keeps its own page style;
only the table and its sorting live here.
"""

from __future__ import annotations

import html as _html
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["SORT_CSS", "SORT_SCRIPT", "cell", "escape", "sort_value", "table"]

escape = _html.escape

#: Header arrows and pointer of a sortable table (each report adds its own look).
SORT_CSS = (
    "table.sortable th{cursor:pointer;user-select:none}"
    'table.sortable th.asc::after{content:" \\25B2"}table.sortable th.desc::after{content:" \\25BC"}'
)

_JS = """(function () {
  function key(c) {
    var v = c.getAttribute("data-v");
    v = (v === null ? c.textContent : v).trim();
    if (v === "") return [0, 0];
    var n = Number(v);
    return isNaN(n) ? [2, v] : [1, n];
  }
  function compare(a, b) {
    if (a[0] !== b[0]) return a[0] - b[0];
    if (a[0] === 2) return a[1].localeCompare(b[1]);
    return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
  }
  function sortBy(table, col, asc) {
    var heads = table.tHead.rows[0].cells, body = table.tBodies[0];
    for (var j = 0; j < heads.length; j++) heads[j].classList.remove("asc", "desc");
    heads[col].classList.add(asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var r = compare(key(a.cells[col]), key(b.cells[col]));
      return asc ? r : -r;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  function column(heads, name) {
    var j;
    for (j = 0; j < heads.length; j++) if (heads[j].getAttribute("data-key") === name) return j;
    for (j = 0; j < heads.length; j++) if (heads[j].textContent === name) return j;
    return /^\\d+$/.test(name) && +name < heads.length ? +name : -1;
  }
  var m = /^#sort=(.+?)(?:[:-](asc|desc))?$/.exec(decodeURIComponent(window.location.hash));
  var tables = document.querySelectorAll("table.sortable");
  for (var t = 0; t < tables.length; t++) {
    (function (table, first) {
      var heads = table.tHead.rows[0].cells;
      for (var i = 0; i < heads.length; i++) {
        heads[i].addEventListener("click", function (col) { return function () {
          sortBy(table, col, !heads[col].classList.contains("asc"));
        }; }(i));
      }
      if (first && m) {
        var col = column(heads, m[1]);
        if (col >= 0) sortBy(table, col, m[2] !== "desc");
      }
    })(tables[t], t === 0);
  }
})();"""

#: The sorting script; put it once at the end of a page's body.
SORT_SCRIPT = f"<script>\n{_JS}\n</script>"


def sort_value(v: Any) -> str:
    """A value as ``data-v`` text: empty for None and non-finite numbers, ``repr`` of a float, text otherwise."""
    if v is None:
        return ""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return str(int(v))
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        f = float(v)
        return repr(f) if math.isfinite(f) else ""
    return str(v)


_NO_SORT = object()


def cell(text: Any = "", sort: Any = _NO_SORT, *, cls: str | None = None, markup: bool = False) -> str:
    """One ``<td>``: ``text`` escaped (``markup``: already HTML), sorted on ``sort`` (:func:`sort_value`)
    when given, else on its text; ``cls``: the cell's class."""
    attrs = f' class="{escape(cls)}"' if cls else ""
    if sort is not _NO_SORT:
        attrs += f' data-v="{escape(sort_value(sort))}"'
    return f"<td{attrs}>{text if markup else escape(str(text))}</td>"


def table(
    heads: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    table_id: str | None = None,
    keys: Sequence[str] | None = None,
    row_classes: Sequence[str] | None = None,
    sortable: bool = True,
) -> str:
    """A ``<table>``: ``heads`` (escaped here; ``keys``: their ``data-key`` for ``#sort=``), one row per
    item of ``rows`` (each a sequence of :func:`cell` strings), ``row_classes``: a class per row (empty:
    none). ``sortable``: sorted by :data:`SORT_SCRIPT` (the page must include it)."""
    if keys is not None and len(keys) != len(heads):
        raise ValueError(f"{len(keys)} keys for {len(heads)} headers")
    ths = "".join(
        f'<th data-key="{escape(k)}">{escape(h)}</th>' if keys is not None else f"<th>{escape(h)}</th>"
        for h, k in zip(heads, keys if keys is not None else heads)
    )
    trs = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes is not None else ""
        trs.append((f'<tr class="{escape(cls)}">' if cls else "<tr>") + "".join(row) + "</tr>")
    attrs = (f' id="{escape(table_id)}"' if table_id else "") + (' class="sortable"' if sortable else "")
    return f"<table{attrs}><thead><tr>{ths}</tr></thead><tbody>{''.join(trs)}</tbody></table>"


def frame_table(df, float_fmt: str = "{:.4g}", max_rows: int = 500) -> str:
    """A pandas frame as a sortable table (floats shown with ``float_fmt``, sorted on their value)."""
    if df is None or not len(df):
        return "<p><em>none</em></p>"
    rows = []
    for _, row in df.head(max_rows).iterrows():
        cells = []
        for v in row:
            if isinstance(v, numbers.Real) and not isinstance(v, (bool, numbers.Integral)):
                cells.append(cell("" if not math.isfinite(float(v)) else float_fmt.format(v), v))
            else:
                cells.append(cell("" if v is None else str(v)))
        rows.append(cells)
    more = f"<p>… {len(df) - max_rows} more rows in the CSV</p>" if len(df) > max_rows else ""
    return table([str(c) for c in df.columns], rows) + more
