"""``cordbench`` command line: a thin dispatcher over ``cordbench/commands/<name>.py``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int | None``; heavy imports stay inside ``run`` so ``cordbench --help`` is fast.
Adding a command is adding its module and one entry in :data:`cordbench.commands.COMMANDS`. User errors (:class:`CordbenchError`) print one line
``error: …`` and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cordbench.commands import COMMANDS
from core import __version__
from core.errors import CordbenchError


def _command_modules() -> dict[str, object]:
    """The command modules by command name (:data:`cordbench.commands.COMMANDS`)."""
    return dict(COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command module."""
    parser = argparse.ArgumentParser(
        prog="cordbench",
        description="Segmentation benchmarks and quantitative analysis of cervical spinal cord MRI.",
        epilog="Run options of fit/validate/test also accept --section.key=value overrides.",
    )
    parser.add_argument("--version", action="version", version=f"cordbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _command_modules().items():
        p = sub.add_parser(name, help=getattr(mod, "HELP", ""), description=getattr(mod, "HELP", ""))
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _overrides(items: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--a.b=v`` / ``--a.b v`` → ``["a.b=v", ...]`` (LightningCLI-style dotted overrides)."""
    out: list[str] = []
    items = list(items)
    while items:
        item = items.pop(0)
        if not item.startswith("--") or "." not in item.split("=", 1)[0]:
            parser.error(f"unrecognized argument {item!r} (overrides look like --section.key=value)")
        if "=" in item:
            out.append(item[2:])
        elif items and not items[0].startswith("--"):
            out.append(f"{item[2:]}={items.pop(0)}")
        else:
            parser.error(f"override {item!r} needs a value")
    return out


def one_line(message: str) -> str:
    """A message on one line (third-party texts embedded in errors may span several)."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cordbench`` console script."""
    parser = build_parser()
    try:  # numeric options check their declared range while parsing (core.ranges)
        args, unknown = parser.parse_known_args(argv)
    except CordbenchError as exc:
        if "--debug" in list(argv if argv is not None else sys.argv[1:]):
            raise
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    mod = _command_modules()[args.command]
    if unknown and not getattr(mod, "ACCEPTS_OVERRIDES", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = _overrides(unknown, parser)
    try:
        code = args._run(args)
    except CordbenchError as exc:
        if args.debug:
            raise
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
