"""Every data module's training target is its label file(s) on the image's own grid, voxel for voxel.

Each subject the data module loads (canonical reorientation, z-score, padding to the patch size,
no resampling) is compared with the label files read here with nibabel and reoriented by
``nib.as_closest_canonical`` (``tests.references.assert_subject_matches_files``): a target
mirrored or shifted against its image fails, whatever its voxel count. Grids: the phantom written
PSR (as sct t2), LAS on an oblique grid, and RPI (strongly tilted cords, 20-25°), the real t2
(PSR) through the spine-generic module, the real t2s (LAS, oblique) through the GM challenge module.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.references import assert_subject_matches_files

ORIENTATIONS = {
    "PSR": dict(orientation="PSR"),
    "LAS-oblique": dict(orientation="LAS", oblique=15.0),
    "RPI": dict(orientation="RPI"),
}


def _dm(name: str, root: Path, task: str, patch=(32, 32), extra: tuple[str, ...] = ()):
    from data_modules.registry import build_datamodule
    from runs.config import load_config

    cfg = load_config(
        [],
        [
            f"data.name={name}",
            f"data.root={root}",
            f"data.task={task}",
            f"data.patch_size=[{patch[0]},{patch[1]}]",
            *extra,
        ],
    )
    return build_datamodule(cfg["data"])


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asanyarray(img.dataobj), img.affine


@pytest.fixture(scope="module", params=sorted(ORIENTATIONS))
def oriented(request, tmp_path_factory) -> Path:
    from data_modules.phantom import generate_cohort

    root = tmp_path_factory.mktemp(f"targets-{request.param}") / "phantom"
    generate_cohort(root, n_subjects=1, seed=2, dwi=False, tilt_min=20.0, tilt_max=25.0, **ORIENTATIONS[request.param])
    img = nib.load(str(root / "sub-001" / "anat" / "sub-001_T2w.nii.gz"))
    assert "".join(nib.aff2axcodes(img.affine)) == request.param.split("-")[0]
    return root


def _expected(root: Path, sub: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target, affine, image) on the native grid, composed here from the files as the task defines."""
    la = root / "derivatives" / "labels" / sub / "anat"
    contrast = "T2star" if task == "gm" else "T2w"
    image, aff = _load(root / sub / "anat" / f"{sub}_{contrast}.nii.gz")
    if task == "levels":
        lv, _ = _load(la / f"{sub}_T2w_label-SC_desc-levels_dseg.nii.gz")
        return lv.astype(np.int16), aff, image
    name = {"sc": "SC", "canal": "canal", "gm": "SC"}[task]
    target = (_load(la / f"{sub}_{contrast}_label-{name}_seg.nii.gz")[0] > 0).astype(np.int16)
    if task == "gm":
        target[_load(la / f"{sub}_T2star_label-GM_seg.nii.gz")[0] > 0] = 2
    return target, aff, image


@pytest.mark.parametrize("task", ["sc", "canal", "gm", "levels"])
def test_phantom_target_is_the_label_file_on_the_image_grid(oriented, task):
    dm = _dm("phantom", oriented, task, patch=(160, 160))  # larger than the slices: padded
    (spec,) = dm.specs
    subject = dm.load_subject(spec)
    target, aff, image = _expected(oriented, spec.subject, task)
    assert len(np.unique(target)) >= (8 if task == "levels" else 3 if task == "gm" else 2)
    assert_subject_matches_files(subject, target, aff, image)


def test_levels_target_from_discs_is_on_the_image_grid(oriented, tmp_path):
    """Without a level-labelled cord, the levels target comes from the SC mask and the disc labels."""
    from data_modules.levels import level_map_from_files

    root = shutil.copytree(oriented, tmp_path / "phantom", ignore=shutil.ignore_patterns("*desc-levels*"))
    dm = _dm("spine_generic", root, "levels")
    (spec,) = dm.specs
    assert set(spec.labels) == {"SC", "discs"}
    subject = dm.load_subject(spec)
    la = root / "derivatives" / "labels" / spec.subject / "anat"
    _, levels = level_map_from_files(
        la / f"{spec.subject}_T2w_label-SC_seg.nii.gz", la / f"{spec.subject}_T2w_label-discs_dlabel.nii.gz"
    )
    target = np.where(levels <= 7, levels, 0)
    image, aff = _load(root / spec.subject / "anat" / f"{spec.subject}_T2w.nii.gz")
    assert len(np.unique(target)) >= 6
    assert_subject_matches_files(subject, target, aff, image)


def test_real_t2_psr_through_the_spine_generic_module(sct_data, tmp_path):
    t2, seg = sct_data / "t2" / "t2.nii.gz", sct_data / "t2" / "t2_seg-manual.nii.gz"
    (tmp_path / "sub-01" / "anat").mkdir(parents=True)
    la = tmp_path / "derivatives" / "labels" / "sub-01" / "anat"
    la.mkdir(parents=True)
    shutil.copy(t2, tmp_path / "sub-01" / "anat" / "sub-01_T2w.nii.gz")
    shutil.copy(seg, la / "sub-01_T2w_label-SC_seg.nii.gz")
    (tmp_path / "participants.tsv").write_text("participant_id\tsex\nsub-01\tF\n")
    dm = _dm("spine_generic", tmp_path, "sc", patch=(64, 64))  # canonical slices are 52×60: padded
    (spec,) = dm.specs
    subject = dm.load_subject(spec)
    image, aff = _load(t2)
    assert "".join(nib.aff2axcodes(aff)) == "PSR"
    assert_subject_matches_files(subject, (_load(seg)[0] > 0).astype(np.int16), aff, image)


@pytest.mark.parametrize("mode", ["majority", "staple"])
def test_real_t2s_las_oblique_through_the_gm_challenge_module(sct_data, tmp_path, mode):
    from data_modules.gmchallenge import fuse_raters, to_task_target
    from tests.support.gmchallenge import make_fixture

    info = make_fixture(tmp_path, sct_data / "t2s", sites=(1,), per_site=1, test_subjects=0)
    dm = _dm("gmchallenge", tmp_path, "gm", patch=(48, 48), extra=(f"data.raters={mode}",))
    (spec,) = dm.specs
    subject = dm.load_subject(spec)
    image, aff = _load(spec.image)
    np.testing.assert_allclose(aff, info["affine"])
    want = to_task_target(fuse_raters(info["masks"], mode), "gm")
    assert set(np.unique(want)) == {0, 1, 2}
    assert_subject_matches_files(subject, want, aff, image)
