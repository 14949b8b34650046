"""Where ``cordbench predict`` writes each input's mask: checked before any inference (single and ensemble)."""

from __future__ import annotations

from pathlib import Path


def _default_out(src: Path, task: str) -> Path:
    stem = src.name[:-7] if src.name.endswith(".nii.gz") else src.stem
    return src.with_name(f"{stem}_label-{task}_seg.nii.gz")


def plan_outputs(inputs: list[Path], output: str | None, task: str, ckpt: str | list[str]) -> list[Path]:
    """The mask path of every input, checked before any inference.

    ``-o`` is a folder when it ends with a separator, is an existing folder, or (several inputs)
    has no NIfTI extension; otherwise it is the one mask and must end in .nii.gz/.nii. No mask or
    sidecar may be one of the inputs or the checkpoint, and no two inputs may write the same mask.
    """
    from core.errors import OutputError
    from core.outputs import NIFTI_SUFFIXES, check_not_input, check_output_dir, check_output_file
    from evaluation.inference import sidecar_path

    named = {f"-i {p}": p for p in inputs}
    for i, c in enumerate([ckpt] if isinstance(ckpt, (str, Path)) else ckpt):
        named["--ckpt" if i == 0 else f"--ckpt #{i + 1}"] = c
    folder = output is not None and (
        output.endswith(("/", "\\"))
        or Path(output).is_dir()
        or (len(inputs) > 1 and not output.lower().endswith(NIFTI_SUFFIXES))
    )
    if output is not None and len(inputs) > 1 and not folder:
        raise OutputError(f"{len(inputs)} inputs need -o to be a folder (it holds one mask per input)", output)
    if folder:
        check_output_dir(output, inputs=named, what="-o folder")
        outs = [Path(output) / _default_out(src, task).name for src in inputs]
    elif output is not None:
        outs = [check_output_file(output, inputs=named, suffixes=NIFTI_SUFFIXES, what="mask (-o)")]
    else:
        outs = [_default_out(src, task) for src in inputs]
    seen: dict[Path, Path] = {}
    for src, out in zip(inputs, outs):
        check_output_file(out, inputs=named, suffixes=NIFTI_SUFFIXES, what="mask")
        check_not_input(sidecar_path(out), named)
        if out.absolute() in seen:
            raise OutputError(f"inputs {seen[out.absolute()]} and {src} would both write this mask", out)
        seen[out.absolute()] = src
    return outs
