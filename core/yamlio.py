"""The one YAML reader of the project: safe, and strict about what a loader would accept silently.

Every YAML the tool reads (run and sweep configs, ``config.yaml`` of a run folder, split and
exclude files, randomisation blocks, ``--key=value`` override values) goes through :func:`loads` or
:func:`read_file`. On top of ``yaml.SafeLoader`` (no Python objects):

* **duplicate keys** in one mapping are refused, naming the key and both lines (a loader keeps the
  last silently: ``max_epochs: 1`` then ``max_epochs: 2`` trains 2 epochs);
* **alias expansion** is bounded: the document is composed first and the size of its tree with
  every alias expanded is counted before any object is built; more than :data:`MAX_NODES` nodes is
  refused (a "billion laughs" document expands to ~10⁹ nodes from a few hundred bytes);
* a file that is **missing, a folder, empty (0 bytes or no document), or not text** (a NUL byte or
  invalid UTF-8) is one line naming the file, never a traceback and never "the defaults".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError

#: Largest tree a YAML document may expand to, aliases expanded (a run or sweep config has < 500).
MAX_NODES = 100_000


class YamlSyntaxError(ConfigError):
    """Text that is not YAML at all (a scanner or parser error), as opposed to YAML that is refused."""


def _expanded_size(node: yaml.Node, memo: dict[int, int], stack: set[int]) -> int:
    """Number of nodes of ``node``'s tree with every alias expanded (a recursive alias counts as bound)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in stack:  # a recursive structure: infinite once expanded
        return MAX_NODES + 1
    stack.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            size += _expanded_size(child, memo, stack)
            if size > MAX_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo, stack) + _expanded_size(v, memo, stack)
            if size > MAX_NODES:
                break
    stack.discard(key)
    memo[key] = size
    return size


def _check_duplicates(node: yaml.Node, source: str, prefix: str = "", seen: set[int] | None = None) -> None:
    """Refuse a mapping that names one key twice (merge keys ``<<`` excepted), with both lines."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                name = (k.tag, k.value)
                line = k.start_mark.line + 1
                if name in lines:
                    where = f"line {line}" if lines[name] == line else f"lines {lines[name]} and {line}"
                    raise ConfigError(
                        f"duplicate key {prefix + k.value!r} on {where} "
                        "(a YAML loader keeps the last silently); keep one",
                        source,
                    )
                lines[name] = line
            sub = f"{prefix}{k.value}." if isinstance(k, yaml.ScalarNode) else prefix
            _check_duplicates(v, source, sub, seen)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _check_duplicates(child, source, prefix, seen)


def loads(text: str, source: str | Path = "YAML") -> Any:
    """Parse one YAML document safely (see the module docstring); ``None`` for an empty document."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise YamlSyntaxError(f"invalid YAML: {exc}", source) from None
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_NODES:
            raise ConfigError(
                f"YAML aliases expand to more than {MAX_NODES} nodes (an alias bomb?): refused before building it",
                source,
            )
        _check_duplicates(node, str(source))
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}", source) from None
    finally:
        loader.dispose()


def read_text(path: str | Path, what: str = "config file", error: type[Exception] = ConfigError) -> str:
    """The text of a YAML file; one line when it is missing, a folder, empty (0 bytes) or not text."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} not found", path)
    if path.is_dir():
        raise error(f"{what} is a folder, not a YAML file", path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"unreadable {what} ({exc.strerror or exc})", path) from None
    if not data:
        raise error(f"{what} is empty (0 bytes): nothing to read (the defaults are not assumed)", path)
    nul = data.find(b"\0")
    if nul >= 0:
        raise error(f"{what} is a binary file, not YAML text (NUL byte at offset {nul})", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{what} is not UTF-8 text, not a YAML file (byte 0x{data[exc.start]:02x} at offset {exc.start})", path
        ) from None


def read_file(path: str | Path, what: str = "config file", error: type[Exception] = ConfigError) -> Any:
    """:func:`loads` of :func:`read_text`; a file holding no document (only comments) is refused too."""
    text = read_text(path, what, error)
    try:
        data = loads(text, path)
    except ConfigError as exc:
        raise error(str(exc)) from None
    if data is None:
        raise error(f"{what} holds no YAML document (only comments or blank lines)", path)
    return data


def read_mapping(path: str | Path, what: str = "config file", error: type[Exception] = ConfigError) -> dict[str, Any]:
    """:func:`read_file` of a file whose top level must be a mapping."""
    data = read_file(path, what, error)
    if not isinstance(data, dict):
        raise error(f"expected a mapping at top level, got {type(data).__name__}", path)
    return data


def item_comments(text: str) -> dict[str, str]:
    """Trailing comments of plain block-sequence items (``- sub-01  # Motion artifact`` →
    ``{"sub-01": "Motion artifact"}``): the reasons spine-generic's ``exclude.yml`` keeps in comments,
    which a YAML loader drops. Quoted or flow items are not matched (they get no comment)."""
    import re

    out: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*-\s+([^\s#'\"\[\]{}]+)\s+#\s?(.*?)\s*$", line)
        if m:
            out.setdefault(m.group(1), m.group(2))
    return out


__all__ = ["MAX_NODES", "YamlSyntaxError", "item_comments", "loads", "read_file", "read_mapping", "read_text"]
