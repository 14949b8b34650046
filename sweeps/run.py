"""Entry point for ``ray submit`` and ``ray job submit``: run (or resume) a sweep on the cluster.

    ray submit configs/cluster/aws.yaml sweeps/run.py -- configs/sweeps/ablation_full.yaml
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python sweeps/run.py configs/sweeps/quickstart.yaml

The paths from before the YAMLs moved to ``configs/`` (``sweeps/ablation_full.yaml``,
``sweeps/cluster/aws.yaml``) still work (:func:`core.paths.find_config`; ``sweeps/cluster`` is a
link to ``configs/cluster`` for the ``ray`` commands).

It joins the running cluster (``address=auto`` unless ``--address`` is given) and accepts the
options of ``cordbench sweep`` (``--resume DIR``, ``--storage``, ``--override``).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """``cordbench sweep`` with ``--address auto`` by default."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository (when not pip-installed)
    from cordbench.cli import main as cli_main
    from core.paths import find_config

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if args and not args[0].startswith("-"):
        # `ray submit` runs this file from the head's home folder: find the sweep YAML in the checkout
        args[0] = str(find_config(args[0], roots=(Path.home() / "cordbench",)))
    if not any(a == "--address" or a.startswith("--address=") for a in args):
        args += ["--address", "auto"]
    return cli_main(["sweep", *args])


if __name__ == "__main__":
    sys.exit(main())
