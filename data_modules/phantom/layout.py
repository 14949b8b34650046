"""File names of the phantom (spine-generic BIDS naming) and the JSON sidecars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import __version__

TRUTH_DIR = "derivatives/phantom-truth"
LABELS_DIR = "derivatives/labels"
#: the anatomical contrasts beyond T2w and T2* (option ``contrasts``) -> their BIDS contrast chains
EXTRA_CONTRASTS = {"T1w": "T1w", "MTon": "flip-1_mt-on_MTS", "MToff": "flip-2_mt-off_MTS"}
GENERATOR = {"Name": "cordbench phantom", "Version": __version__, "CodeURL": "data_modules/phantom (cordbench)"}


#: Label files of the ``spine-generic`` layout: the kinds ``data-multi-subject`` holds for the
#: contrasts the phantom simulates (FILELIST.txt): cord and canal on T2w and T2*, discs on T2w, GM on
#: T2*, the cord alone on the averaged DWI; no level map anywhere.
SPINE_GENERIC_LABELS = (
    "T2w_SC",
    "T2w_canal",
    "T2w_discs",
    "T2star_SC",
    "T2star_canal",
    "T2star_GM",
    "dwi_SC",
    *(f"{c}_SC" for c in EXTRA_CONTRASTS),  # spine-generic segments the cord of T1w, MT-on and MT-off too
)
#: Label files of the ``cordbench`` layout (adds the level maps and the DWI-grid WM/GM masks).
CORDBENCH_LABELS = (
    "T2w_SC",
    "T2w_canal",
    "T2w_discs",
    "T2w_levels",
    "T2star_SC",
    "T2star_GM",
    "T2star_levels",
    "dwi_SC",
    "dwi_levels",
    "dwi_WM",
    "dwi_GM",
    *(f"{c}_{k}" for c in EXTRA_CONTRASTS for k in ("SC", "levels")),
)


def subject_paths(root: Path, sub: str, session: str | None = None, kind: str = "cordbench") -> dict[str, Path]:
    """All files of subject ``sub`` (e.g. ``sub-001``) keyed by a short name.

    With ``session`` (``ses-01``) the images and labels go to ``sub-X/ses-YY/`` with the BIDS names
    ``sub-X_ses-YY_<contrast>``; the truth JSON stays one per subject (the anatomy of every session).
    ``kind`` is the layout: label keys it does not write are absent; ``spine-generic`` adds the
    truth level map of the DWI cord mask (``dwi_levels_truth``) under the truth folder.
    """
    paths = _all_paths(root, sub, session)
    keep = SPINE_GENERIC_LABELS if kind == "spine-generic" else CORDBENCH_LABELS
    out = {k: p for k, p in paths.items() if k not in LABEL_KEYS or k in keep}
    if kind == "spine-generic":
        name = paths["dwi_SC"].name.replace("_label-SC_seg", "_desc-truth_levels")
        out["dwi_levels_truth"] = paths["truth"].parent / (session or "") / name
    return out


def exclude_yml(spec: list[tuple[str, str]], reason: str = "phantom: excluded on request") -> str:
    """spine-generic's ``exclude.yml``: each key, then its subjects, one ``- sub-X  # reason`` a line."""
    lines: list[str] = []
    for key in dict.fromkeys(k for k, _ in spec):
        lines.append(f"{key}:")
        lines += [f"- {sub}  # {reason}" for k, sub in spec if k == key]
    return "\n".join(lines) + "\n"


def _all_paths(root: Path, sub: str, session: str | None = None) -> dict[str, Path]:
    """Every file name of the phantom, whatever the layout."""
    folder = root / sub if session is None else root / sub / session
    lfolder = root / LABELS_DIR / sub if session is None else root / LABELS_DIR / sub / session
    anat, dwi = folder / "anat", folder / "dwi"
    la, ld = lfolder / "anat", lfolder / "dwi"
    truth = root / TRUTH_DIR / sub / f"{sub}_truth.json"
    sub = sub if session is None else f"{sub}_{session}"
    paths = {
        "T2w": anat / f"{sub}_T2w.nii.gz",
        "T2star": anat / f"{sub}_T2star.nii.gz",
        "dwi": dwi / f"{sub}_dwi.nii.gz",
        "bval": dwi / f"{sub}_dwi.bval",
        "bvec": dwi / f"{sub}_dwi.bvec",
        "dwi_mean": dwi / f"{sub}_rec-average_dwi.nii.gz",
        "T2w_SC": la / f"{sub}_T2w_label-SC_seg.nii.gz",
        "T2w_canal": la / f"{sub}_T2w_label-canal_seg.nii.gz",
        "T2w_discs": la / f"{sub}_T2w_label-discs_dlabel.nii.gz",
        "T2w_levels": la / f"{sub}_T2w_label-SC_desc-levels_dseg.nii.gz",
        "T2w_PMJ": la / f"{sub}_T2w_label-PMJ_dlabel.nii.gz",
        "T2star_SC": la / f"{sub}_T2star_label-SC_seg.nii.gz",
        "T2star_GM": la / f"{sub}_T2star_label-GM_seg.nii.gz",
        "T2star_levels": la / f"{sub}_T2star_label-SC_desc-levels_dseg.nii.gz",
        "dwi_SC": ld / f"{sub}_rec-average_dwi_label-SC_seg.nii.gz",
        "dwi_levels": ld / f"{sub}_rec-average_dwi_label-SC_desc-levels_dseg.nii.gz",
        "dwi_WM": ld / f"{sub}_rec-average_dwi_label-WM_seg.nii.gz",
        "dwi_GM": ld / f"{sub}_rec-average_dwi_label-GM_seg.nii.gz",
        "T2star_canal": la / f"{sub}_T2star_label-canal_seg.nii.gz",
        "truth": truth,
    }
    for key, chain in EXTRA_CONTRASTS.items():  # written with ``contrasts`` (spine-generic's names since 2024)
        paths[key] = anat / f"{sub}_{chain}.nii.gz"
        paths[f"{key}_SC"] = la / f"{sub}_{chain}_label-SC_seg.nii.gz"
        paths[f"{key}_levels"] = la / f"{sub}_{chain}_label-SC_desc-levels_dseg.nii.gz"
    return paths


LABEL_KEYS = frozenset(SPINE_GENERIC_LABELS + CORDBENCH_LABELS)


def sidecar(path: Path) -> Path:
    """The JSON sidecar of a NIfTI file."""
    return path.with_name(path.name.replace(".nii.gz", ".json"))


def image_sidecar(participant: dict[str, Any], contrast: str, **extra: Any) -> dict[str, Any]:
    """BIDS sidecar of an acquisition, with the participant's scanner fields."""
    base = {
        "Modality": "MR",
        "MagneticFieldStrength": 3,
        "Manufacturer": participant["manufacturer"],
        "ManufacturersModelName": participant["manufacturers_model_name"],
        "InstitutionName": participant["institution"],
        "ReceiveCoilName": participant["receive_coil_name"],
        "SoftwareVersions": participant["software_versions"],
        "ConversionSoftware": "cordbench phantom",
        "ConversionSoftwareVersion": __version__,
    }
    seq = {
        "T2w": {
            "SeriesDescription": "T2w 3D (phantom)",
            "MRAcquisitionType": "3D",
            "EchoTime": 0.12,
            "RepetitionTime": 1.5,
        },
        "T2star": {
            "SeriesDescription": "GRE-ME (phantom)",
            "MRAcquisitionType": "2D",
            "EchoTime": 0.014,
            "RepetitionTime": 0.6,
            "SliceThickness": 5,
        },
        "T1w": {
            "SeriesDescription": "T1w 3D MPRAGE (phantom)",
            "MRAcquisitionType": "3D",
            "EchoTime": 0.0037,
            "RepetitionTime": 2.0,
            "InversionTime": 0.9,
        },
        "MTon": {
            "SeriesDescription": "GRE-MT on (phantom)",
            "MRAcquisitionType": "3D",
            "EchoTime": 0.0039,
            "RepetitionTime": 0.035,
            "FlipAngle": 9,
            "MTState": True,
        },
        "MToff": {
            "SeriesDescription": "GRE-MT off (phantom)",
            "MRAcquisitionType": "3D",
            "EchoTime": 0.0039,
            "RepetitionTime": 0.035,
            "FlipAngle": 9,
            "MTState": False,
        },
        "dwi": {
            "SeriesDescription": "DWI (phantom)",
            "MRAcquisitionType": "2D",
            "EchoTime": 0.095,
            "RepetitionTime": 0.64,
            "SliceThickness": 5,
        },
    }[contrast]
    return {**base, **seq, **extra}


def label_sidecar(description: str) -> dict[str, Any]:
    """Sidecar of a label file (same keys as spine-generic's)."""
    return {"SpatialReference": "orig", "GeneratedBy": [{**GENERATOR, "Description": description}]}


def dataset_description(n_subjects: int, seed: int) -> dict[str, Any]:
    """Top-level dataset_description.json."""
    return {
        "Name": f"cordbench phantom cohort (seed {seed}, {n_subjects} subjects)",
        "BIDSVersion": "1.8.0",
        "DatasetType": "raw",
        "License": "CC0",
        "Authors": ["cordbench phantom generator"],
        "GeneratedBy": [GENERATOR],
        "HowToAcknowledge": "Synthetic data; the DWI gradient scheme is spine-generic's "
        "(data-multi-subject, CC-BY 4.0).",
    }


def derivative_description(name: str, description: str) -> dict[str, Any]:
    """dataset_description.json of a derivatives folder."""
    return {
        "Name": name,
        "BIDSVersion": "1.8.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{**GENERATOR, "Description": description}],
    }


PARTICIPANTS_JSON = {
    "participant_id": {"LongName": "Participant ID", "Description": "Unique ID (sub-NNN)"},
    "sex": {"LongName": "Participant sex", "Description": "M or F (drawn 50/50)"},
    "age": {"LongName": "Participant age", "Description": "yy (uniform 20-60)"},
    "height": {"LongName": "Participant height", "Description": "cm"},
    "weight": {"LongName": "Participant weight", "Description": "kg"},
    "date_of_scan": {"LongName": "Date of scan", "Description": "n/a for the phantom"},
    "institution_id": {
        "LongName": "institution_id",
        "Description": "InstitutionId, drawn with the frequencies of spine-generic",
    },
    "institution": {"LongName": "InstitutionName", "Description": "InstitutionName"},
    "manufacturer": {"LongName": "ManufacturerName", "Description": "Siemens, GE or Philips"},
    "manufacturers_model_name": {"LongName": "ManufacturersModelName", "Description": "ManufacturersModelName"},
    "receive_coil_name": {"LongName": "ReceiveCoilName", "Description": "ReceiveCoilName"},
    "software_versions": {"LongName": "SoftwareVersions", "Description": "SoftwareVersions"},
    "researcher": {"LongName": "Researcher", "Description": "n/a for the phantom"},
    "pathology": {
        "LongName": "Pathology",
        "Description": "HC: healthy control (asymptomatic stenosis possible, see notes and the truth files)",
    },
    "notes": {"LongName": "Notes", "Description": "stenosis level and severity of the phantom subject"},
}
