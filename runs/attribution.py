"""Results are recorded only under the run that made them: the checks before ``test`` or ``test --real`` write.

* :func:`check_network` — ``test``/``validate`` write into the run folder of the *config*, whose
  ``config.yaml`` names the config's network; a checkpoint of another network would have its scores
  recorded under that name. Refused, naming both (the checkpoint's network is not substituted: the
  user says which network was meant). A checkpoint of the config's network at another preset (size)
  is that network at the checkpoint's preset, which the weights fix: its preset is recorded, with a
  ``warning:`` line.
* :func:`check_run_of_checkpoint` — ``test --real -o RUN`` replaces RUN's real-data results; it is
  allowed only when the checkpoint is one of RUN's own (same file or same SHA-256 as a file of
  ``RUN/checkpoints/``, or the checkpoint RUN's earlier results record), else refused naming both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import ConfigError, OutputError
from runs.run_folder import RunFolder


def check_network(cfg: dict[str, Any], hparams: Mapping[str, Any], ckpt: str | Path) -> None:
    """Refuse a checkpoint of another network than ``model.name``; record its own ``model.preset`` in ``cfg``."""
    import sys

    network, preset = hparams.get("network"), hparams.get("preset")
    if network is None:  # a checkpoint that does not say: its weights are checked against the model
        return
    if network != cfg["model"].get("name"):
        raise ConfigError(
            f"checkpoint is a {network!r} network (preset {preset!r}) but the config names "
            f"{cfg['model'].get('name')!r} (model.name), under which its scores would be recorded: give "
            f"--model {network} or the run's own config (--config <run>/config.yaml)",
            ckpt,
        )
    if preset is not None and preset != cfg["model"].get("preset"):
        print(
            f"warning: {ckpt}: checkpoint is preset {preset!r} of {network!r}; recorded as such (the config "
            f"said {cfg['model'].get('preset')!r})",
            file=sys.stderr,
        )
        cfg["model"]["preset"] = preset


def _same_file(a: Path, b: Path, digest: str) -> bool:
    from core import io

    try:
        return a.resolve() == b.resolve() or (b.is_file() and io.sha256(b) == digest)
    except OSError:
        return False


def _recorded_checkpoints(folder: RunFolder) -> list[tuple[str, str | None]]:
    """``(path, sha256 or None)`` of the checkpoints the folder's earlier results name."""
    import json

    out = []
    for path in (folder.real_summary, folder.test_summary):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("checkpoint"):
            out.append((str(rec["checkpoint"]), rec.get("checkpoint_sha256")))
    return out


def check_run_of_checkpoint(out: str | Path, ckpt: str | Path) -> None:
    """Refuse to write a checkpoint's results into a run folder that holds another checkpoint's run."""
    from core import io

    folder = RunFolder(Path(out))
    ckpt = Path(ckpt)
    own = sorted(folder.checkpoints.glob("*.ckpt")) if folder.checkpoints.is_dir() else []
    recorded = _recorded_checkpoints(folder)
    if not (own or recorded or folder.config.exists()):
        return  # a new folder, or one holding no run
    if not ckpt.is_file():
        return  # the checkpoint reader says what is wrong with it
    digest = io.sha256(ckpt)
    if any(_same_file(ckpt, p, digest) for p in own):
        return
    if any(sha == digest or _same_file(ckpt, Path(p), digest) for p, sha in recorded):
        return
    names = ", ".join(p.name for p in own) or (recorded[0][0] if recorded else "none recorded")
    raise OutputError(
        f"run folder of another checkpoint: {ckpt} is not one of its checkpoints ({names}), and its "
        "results here would be recorded as this run's: give -o a new folder, or score the run's own checkpoint",
        out,
    )


__all__ = ["check_network", "check_run_of_checkpoint"]
