"""QC decisions in the HTML reports: Pass / Fail / Artefact and a note per subject, exported as an
``exclude.yml`` that ``cordbench analyze --exclude`` reads.

Every report holding :func:`decision_cell` cells (the QC report of ``test`` / ``predict --qc``, the
cohort study's report) and one :func:`toolbar` gets, from :data:`QC_SCRIPT` (inline, no network):

* a decision menu and a note field per subject; the decisions are kept in the browser's local
  storage under the report's path, so they survive a reload of the page;
* **Export**: downloads ``exclude.yml`` in spine-generic's format — the category key (editable,
  ``qc`` by default: the whole subject; ``csa_t2`` or ``dti_fa`` remove only the anatomy or the
  diffusion in ``analyze``, :mod:`analysis.exclusions`) listing every subject marked Fail or
  Artefact, the decision and note in the trailing comment, which is where spine-generic keeps its
  reasons. The first line names the report it came from (:data:`EXPORT_HEADER`); the second the
  time; a ``# Pass:`` comment keeps the subjects that passed, so an import restores them too::

      # QC decisions exported by cordbench from cordbench QC (file:///…/qc/index.html)
      # exported: 2026-01-01T12:00:00.000Z
      # Pass: sub-01, sub-03
      qc:
      - sub-02  # Fail: motion
      - sub-04  # Artefact: ghosting

* **Import**: reads such a file back into the page (decisions and notes).

Subject ids that are not plain (letters, digits, ``._-/``) are written double-quoted (JSON, a valid
YAML scalar); their comments are then not read back as reasons.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core import html

EXPORT_HEADER = "# QC decisions exported by cordbench from "
DECISIONS = ("Pass", "Fail", "Artefact")

QC_CSS = (
    "#qc-decisions{margin:8px 0;padding:6px;background:#eef;border:1px solid #99c}"
    "#qc-decisions input,#qc-decisions button{margin-right:8px}td.qc{white-space:nowrap;text-align:left}"
    "td.qc select{margin-right:4px}"
)

_JS = r"""(function () {
  var bar = document.getElementById("qc-decisions");
  if (!bar) return;
  var report = bar.getAttribute("data-report");
  var key = "cordbench-qc:" + window.location.pathname;
  var state = {};
  try { state = JSON.parse(window.localStorage.getItem(key) || "{}") || {}; } catch (e) { state = {}; }
  var cells = document.querySelectorAll("td[data-qc-subject]");
  var status = document.getElementById("qc-status");
  function counts() {
    var n = {Pass: 0, Fail: 0, Artefact: 0};
    Object.keys(state).forEach(function (s) { if (n[state[s].d] !== undefined) n[state[s].d]++; });
    status.textContent = "Pass " + n.Pass + " · Fail " + n.Fail + " · Artefact " + n.Artefact +
      " of " + cells.length;
  }
  function save() {
    try { window.localStorage.setItem(key, JSON.stringify(state)); } catch (e) {}
    counts();
  }
  function show() {
    cells.forEach(function (cell) {
      var s = state[cell.getAttribute("data-qc-subject")] || {};
      cell.querySelector("select").value = s.d || "";
      cell.querySelector("input").value = s.n || "";
      cell.setAttribute("data-v", s.d || "");
    });
    counts();
  }
  cells.forEach(function (cell) {
    var sub = cell.getAttribute("data-qc-subject");
    var sel = document.createElement("select");
    ["", "Pass", "Fail", "Artefact"].forEach(function (d) {
      var o = document.createElement("option"); o.value = d; o.textContent = d || "—"; sel.appendChild(o);
    });
    var note = document.createElement("input");
    note.type = "text"; note.placeholder = "note"; note.size = 18;
    function update() {
      state[sub] = {d: sel.value, n: note.value};
      if (!sel.value && !note.value) delete state[sub];
      cell.setAttribute("data-v", sel.value);
      save();
    }
    sel.addEventListener("change", update);
    note.addEventListener("input", update);
    cell.appendChild(sel); cell.appendChild(note);
  });
  function scalar(s) { return /^[A-Za-z0-9._\/-]+$/.test(s) ? s : JSON.stringify(s); }
  function yamlText() {
    var cat = document.getElementById("qc-category").value.trim();
    if (!/^[A-Za-z0-9_-]+$/.test(cat)) cat = "qc";
    var subs = Array.prototype.map.call(cells, function (c) { return c.getAttribute("data-qc-subject"); });
    var pass = [], out = [];
    subs.forEach(function (s) {
      var d = state[s] || {};
      if (d.d === "Pass") pass.push(s);
      if (d.d === "Fail" || d.d === "Artefact") {
        var n = (d.n || "").replace(/[\r\n]+/g, " ").trim();
        out.push("- " + scalar(s) + "  # " + d.d + (n ? ": " + n : ""));
      }
    });
    return "# QC decisions exported by cordbench from " + report + " (" + window.location.href + ")\n" +
      "# exported: " + new Date().toISOString() + "\n" +
      (pass.length ? "# Pass: " + pass.join(", ") + "\n" : "") +
      cat + ":" + (out.length ? "\n" + out.join("\n") : " []") + "\n";
  }
  document.getElementById("qc-export").addEventListener("click", function () {
    var a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([yamlText()], {type: "text/yaml"}));
    a.download = "exclude.yml";
    document.body.appendChild(a); a.click(); a.remove();
  });
  document.getElementById("qc-import").addEventListener("change", function (ev) {
    var f = ev.target.files[0];
    if (!f) return;
    var reader = new FileReader();
    reader.onload = function () {
      var next = {};
      reader.result.split(/\r?\n/).forEach(function (line) {
        var m = /^#\s*Pass:\s*(.*)$/.exec(line);
        if (m) { m[1].split(/,\s*/).forEach(function (s) { if (s) next[s] = {d: "Pass", n: ""}; }); return; }
        m = /^([A-Za-z0-9_-]+):/.exec(line);
        if (m) { document.getElementById("qc-category").value = m[1]; return; }
        m = /^\s*-\s+("(?:[^"\\]|\\.)*"|[^\s#]+)\s*(?:#\s*(.*))?$/.exec(line);
        if (!m) return;
        var sub = m[1].charAt(0) === '"' ? JSON.parse(m[1]) : m[1];
        var c = /^(Fail|Artefact)(?::\s*(.*))?$/.exec((m[2] || "").trim());
        next[sub] = c ? {d: c[1], n: c[2] || ""} : {d: "Fail", n: (m[2] || "").trim()};
      });
      state = next; save(); show();
      status.textContent += " (imported " + f.name + ")";
    };
    reader.readAsText(f);
  });
  show();
})();"""

#: The decisions script; put it once at the end of a page's body (after its tables).
QC_SCRIPT = f"<script>\n{_JS}\n</script>"


def decision_cell(subject: str) -> str:
    """The (script-filled) decision cell of one subject's row."""
    return f'<td class="qc" data-qc-subject="{html.escape(str(subject))}"></td>'


def toolbar(report: str, category: str = "qc") -> str:
    """Category field, Export and Import of the page's decisions; ``report`` names the page in the export."""
    return (
        f'<div id="qc-decisions" data-report="{html.escape(report)}"><b>QC decisions</b> · '
        f'<label>category <input id="qc-category" value="{html.escape(category)}" size="10"></label>'
        '<button id="qc-export" type="button">Export exclude.yml</button>'
        '<label>Import <input id="qc-import" type="file" accept=".yml,.yaml,text/yaml"></label>'
        '<span id="qc-status"></span></div>'
    )


def qc_section(subjects: Sequence[str], report: str = "cordbench analysis") -> str:
    """A report section: the toolbar and one decision row per subject (the cohort study's report)."""
    if not subjects:
        return ""
    rows = [[html.cell(s, cls="s"), decision_cell(s)] for s in subjects]
    return (
        "<h3>QC decisions</h3><p>Mark subjects Pass / Fail / Artefact (kept in this browser across reloads), "
        "export them as <code>exclude.yml</code> and rerun with <code>cordbench analyze --exclude "
        "exclude.yml</code> to leave the failed ones out.</p>"
        f"<style>{QC_CSS}</style>" + toolbar(report) + html.table(["subject", "decision"], rows, table_id="qc")
    )


def export_origin(text: str) -> str | None:
    """The report an exported decisions file names in its first comment, None for other files."""
    m = re.search(r"^" + re.escape(EXPORT_HEADER) + r"(.+?)\s*$", text, re.M)
    return m.group(1) if m else None


__all__ = [
    "DECISIONS",
    "EXPORT_HEADER",
    "QC_CSS",
    "QC_SCRIPT",
    "decision_cell",
    "export_origin",
    "qc_section",
    "toolbar",
]
