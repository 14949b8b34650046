"""A CPU-independent digest of a phantom cohort folder, to pin the generator's output byte for byte."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from core import __version__

_TRUTH_TABLES = ("_truth.json", "truth_levels.tsv")


def _rounded_truth(name: str, text: str) -> bytes:
    """A truth table with every float at 9 significant digits (the CPU-independent part of its values)."""

    def fix(v):
        if isinstance(v, float):
            return float(f"{v:.9g}")
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    if name.endswith(".json"):
        return json.dumps(fix(json.loads(text)), sort_keys=True).encode()
    cells = []
    for line in text.splitlines():
        row = []
        for c in line.split("\t"):
            try:
                row.append(f"{float(c):.9g}" if any(ch in c for ch in ".eE") else c)
            except ValueError:
                row.append(c)
        cells.append("\t".join(row))
    return "\n".join(cells).encode()


def cohort_digest(root: Path) -> str:
    """SHA-256 over every file (path + content; .gz decompressed, the package version masked; the truth
    tables' floats at 9 significant digits)."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        data = p.read_bytes()
        if p.suffix == ".gz":
            data = gzip.decompress(data)
        data = data.replace(__version__.encode(), b"<version>")
        if p.name.endswith(_TRUTH_TABLES):
            data = _rounded_truth(p.name, data.decode())
        h.update(str(p.relative_to(root)).encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()
