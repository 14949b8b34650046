"""Atomic writes: a writer killed mid-way (SIGKILL) never leaves a half-written file under the final name.

A subprocess writes a big NIfTI, CSV or checkpoint through cordbench's writers
(``io.save_nifti``, ``io.write_csv``, the runner's ``AtomicCheckpointIO``); the test SIGKILLs it as
soon as the temporary file holds data, then checks that the final name holds the earlier complete
result (or nothing), that the only other file is the hidden ``.<name>.*.part*`` temporary, and that
this temporary really is incomplete. A write that finished before the kill landed is retried with
a bigger payload (the machine may be slow or busy), so the test always observes a kill mid-way.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    kind, target, scale = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    if kind == "nifti":
        from core import io
        io.save_nifti(rng.random((64 * scale, 128, 96), dtype=np.float32), np.eye(4), target)
    elif kind == "csv":
        import pandas as pd
        from core import io
        io.write_csv(target, pd.DataFrame(rng.random((100_000 * scale, 6))))
    else:
        import torch
        from runs.checkpoints import atomic_checkpoint_io
        ckpt = {"state_dict": {f"w{i}": torch.randn(16, 16) for i in range(3000 * scale)}, "hyper_parameters": {}}
        atomic_checkpoint_io().save_checkpoint(ckpt, target)
    print("finished", flush=True)
""")

NAMES = {"nifti": "sub-01_T2w_label-SC_seg.nii.gz", "csv": "metrics.csv", "checkpoint": "best.ckpt"}


def _temps(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.part*"))


def _kill_when_writing(kind: str, target: Path, scale: int) -> tuple[bool, list[Path]]:
    """Start the writer, SIGKILL it once its temporary file has data; (killed mid-way?, temporaries)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, str(target), str(scale)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            tmp = _temps(target.parent, target.name)
            if tmp and tmp[0].exists() and tmp[0].stat().st_size > 0:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        out, err = proc.communicate()
    if proc.returncode == 0:
        assert "finished" in out
        return False, _temps(target.parent, target.name)
    assert proc.returncode == -signal.SIGKILL, err
    return True, _temps(target.parent, target.name)


def _complete(kind: str, path: Path) -> bool:
    """Whether ``path`` is a complete file of its kind."""
    try:
        if kind == "nifti":
            import nibabel as nib
            import numpy as np

            np.asanyarray(nib.load(str(path)).dataobj).sum()
        elif kind == "csv":
            import pandas as pd

            frame = pd.read_csv(path)
            return len(frame) > 0 and len(frame) % 100_000 == 0
        else:
            import torch

            torch.load(path, weights_only=True)
        return True
    except Exception:
        return False


@pytest.mark.subprocess
@pytest.mark.parametrize("kind, earlier", [("nifti", False), ("csv", True), ("checkpoint", True)])
def test_killed_writer_leaves_no_half_file_under_the_final_name(kind, earlier, tmp_path):
    target = tmp_path / NAMES[kind]
    old = b"an earlier complete result\n"
    for scale in (1, 4, 16):
        if earlier:
            target.write_bytes(old)
        killed, temps = _kill_when_writing(kind, target, scale)
        if not killed:  # the write finished first: it must be complete and alone
            assert temps == [] and _complete(kind, target)
            target.unlink()
            continue
        # killed mid-way: the final name holds the earlier result, or does not exist
        if earlier:
            assert target.read_bytes() == old
        else:
            assert not target.exists()
        # the only trace is the hidden temporary, and it is truly half-written
        assert len(temps) == 1 and temps[0].name.startswith(f".{target.name}.") and ".part" in temps[0].name
        assert sorted(tmp_path.iterdir()) == sorted([temps[0]] + ([target] if earlier else []))
        assert not _complete(kind, temps[0])
        return
    pytest.fail(f"the {kind} writer always finished before the kill (3 sizes)")


def test_completed_write_replaces_atomically_with_normal_permissions(tmp_path):
    import os
    import stat

    import pandas as pd

    from core import io

    target = tmp_path / "metrics.csv"
    target.write_text("old\n")
    io.write_csv(target, pd.DataFrame({"a": [1, 2]}))
    assert target.read_text() == "a\n1\n2\n" and list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600
