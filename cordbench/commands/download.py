"""``cordbench download``: how to fetch spine-generic / the GM challenge, then check the layout."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

HELP = "print exact fetch instructions for spine-generic or the GM challenge; verify a downloaded folder"

SPINE_GENERIC_URL = "https://github.com/spine-generic/data-multi-subject"
GMCHALLENGE_URLS = (
    "http://niftyweb.cs.ucl.ac.uk/program.php?p=CHALLENGE",
    "http://cmictig.cs.ucl.ac.uk/spinal-cord-grey-matter-segmentation-challenge",
)
EXPECTED_GM = {"sites": 4, "train_per_site": 10, "test_per_site": 10, "raters": 4}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    p.add_argument("dataset", choices=("spine-generic", "gmchallenge"), help="which data set")
    p.add_argument("dir", help="target folder (verified when it already holds data)")
    p.add_argument(
        "--subjects",
        nargs="+",
        metavar="SUB",
        help="spine-generic: only these subjects (e.g. sub-amu01 sub-unf01) in the printed/run commands",
    )
    p.add_argument("--filelist", help="spine-generic: expected file list (e.g. FILELIST.txt); report what is missing")
    p.add_argument(
        "--run",
        action="store_true",
        help="spine-generic: run the git / git-annex commands instead of only printing them",
    )


def spine_generic_commands(target: Path, subjects: list[str] | None = None) -> list[list[str]]:
    """The git / git-annex commands that fetch spine-generic into ``target``."""
    get = (
        ["."]
        if not subjects
        else (["participants.tsv"] + [f"{s}/" for s in subjects] + [f"derivatives/labels/{s}/" for s in subjects])
    )
    return [
        ["git", "clone", SPINE_GENERIC_URL, str(target)],
        ["git", "-C", str(target), "annex", "init"],
        ["git", "-C", str(target), "annex", "get", *get],
    ]


def spine_generic_instructions(target: Path, subjects: list[str] | None = None) -> str:
    """Human-readable fetch instructions (from the data set's own README)."""
    cmds = "\n".join("  " + " ".join(c) for c in spine_generic_commands(target, subjects))
    return (
        f"spine-generic multi-subject (BIDS, ~26 GB in full) is a git-annex repository.\n"
        f"Needs git and git-annex >= 8 (Debian/Ubuntu: apt-get install git-annex; check: git annex version).\n"
        f"Fetch:\n{cmds}\n"
        f"Older clones (host moved in 2025): git -C {target} annex enableremote computecanada-public\n"
        f"Update later: git -C {target} pull && git -C {target} annex get .\n"
        f"Then check it: cordbench download spine-generic {target}\n"
    )


def gmchallenge_instructions(target: Path) -> str:
    """Human-readable fetch instructions for the GM challenge 2016 data."""
    return (
        "Spinal Cord Grey Matter Segmentation Challenge 2016 (Prados et al., NeuroImage 2017): 80 T2* images,\n"
        "4 sites; training sc01-sc10 per site with 4 raters' masks (GM = 1, WM = 2) and -levels.txt,\n"
        "test sc11-sc20 images only. The data are distributed by the organisers (registration on their page):\n"
        + "".join(f"  {u}\n" for u in GMCHALLENGE_URLS)
        + f"Unpack the training and test archives into {target} (sub-folders such as train/ and test/ are fine),\n"
        "keeping the original names site<S>-sc<NN>-image.nii.gz, -mask-r<R>.nii.gz, -levels.txt.\n"
        "A curated BIDS copy (sub-ucl001 ..., T2star_label-{SC,GM,WM}_desc-manual_mask<R>) is read too.\n"
        f"Then check it: cordbench download gmchallenge {target}\n"
    )


def verify_spine_generic(root: Path, filelist: Path | None = None) -> list[str]:
    """Index the folder and describe what is there; raises InputError on a broken layout."""
    from collections import Counter

    from core.errors import InputError
    from data_modules.bids import BidsIndex

    index = BidsIndex.from_dir(root, strict=True)
    present = [im for im in index.images if im.exists]
    if not present:
        raise InputError("no image file found (git-annex content not fetched? run: git annex get .)", root)
    lines = [f"{len(index.subjects())} subjects, {len(present)} images present"]
    placeholders = [im for im in index.images if not im.exists]
    if placeholders:
        lines.append(
            f"{len(placeholders)} images referenced but absent (annex placeholders or labels only), "
            f"e.g. {placeholders[0].path}"
        )
    per = Counter(im.contrast for im in present)
    lines.append("images: " + ", ".join(f"{c}={n}" for c, n in sorted(per.items())))
    lab = Counter((im.contrast, lf.label) for im in present for lf in im.labels if lf.path.exists())
    lines.append("labels: " + ", ".join(f"{c}/{label}={n}" for (c, label), n in sorted(lab.items())))
    if index.unparsed:
        lines.append(f"{len(index.unparsed)} NIfTI names not understood, e.g. {index.unparsed[0]}")
    if filelist is not None:
        expected = [
            ln.strip()
            for ln in Path(filelist).read_text().splitlines()
            if ln.strip().endswith((".nii.gz", ".bval", ".bvec", ".tsv"))
        ]
        missing = [r for r in expected if not (root / r).exists()]
        lines.append(
            f"{len(expected) - len(missing)}/{len(expected)} files of {filelist} present"
            + (f"; missing e.g. {missing[0]}" if missing else "")
        )
    return lines


def verify_gmchallenge(root: Path) -> list[str]:
    """Index the folder and compare with the challenge's expected content."""
    from collections import Counter

    from data_modules.gmchallenge import index_gmchallenge

    subs = index_gmchallenge(root)
    lab = [s for s in subs if s.labelled]
    sites = Counter(s.site for s in subs)
    lines = [
        f"{len(subs)} subjects ({len(lab)} with rater masks) over {len(sites)} sites: "
        + ", ".join(f"{k}={v}" for k, v in sorted(sites.items()))
    ]
    e = EXPECTED_GM
    if len(lab) != e["sites"] * e["train_per_site"]:
        lines.append(f"note: the full challenge has {e['sites'] * e['train_per_site']} labelled subjects")
    if len(subs) - len(lab) != e["sites"] * e["test_per_site"]:
        lines.append(f"note: the full challenge has {e['sites'] * e['test_per_site']} test images")
    short = [s.subject for s in lab if len(s.raters) != e["raters"]]
    if short:
        lines.append(f"subjects without {e['raters']} raters: {', '.join(short[:5])}")
    nolev = [s.subject for s in lab if s.levels is None]
    if nolev and len(nolev) < len(lab):
        lines.append(f"labelled subjects without -levels.txt: {', '.join(nolev[:5])}")
    return lines


def _has_data(d: Path) -> bool:
    return d.is_dir() and any(p.name != ".git" for p in d.iterdir())


def _run_commands(cmds: list[list[str]]) -> None:
    from core.errors import CordbenchError

    for tool in ("git", "git-annex"):
        if shutil.which(tool) is None:
            raise CordbenchError(f"{tool} not found: install it first (apt-get install git git-annex)")
    for c in cmds:
        print("+ " + " ".join(c), flush=True)
        r = subprocess.run(c)
        if r.returncode != 0:
            raise CordbenchError(f"command failed with exit code {r.returncode}: {' '.join(c)}")


def run(args: argparse.Namespace) -> int:
    """Print instructions; run them if asked (spine-generic); verify when the folder holds data."""
    from core.errors import ConfigError, InputError

    target = Path(args.dir)
    if target.exists() and not target.is_dir():
        raise InputError("exists and is not a folder (give the data set folder)", target)
    if args.filelist is not None:
        if args.dataset != "spine-generic":
            raise ConfigError("--filelist applies to spine-generic only")
        if not Path(args.filelist).is_file():
            raise InputError(
                "file list not found" if not Path(args.filelist).exists() else "file list is not a file", args.filelist
            )
    if args.dataset == "spine-generic":
        if args.run and not _has_data(target):
            _run_commands(spine_generic_commands(target, args.subjects))
        elif not _has_data(target):
            print(spine_generic_instructions(target, args.subjects))
    elif not _has_data(target):
        print(gmchallenge_instructions(target))
    if not _has_data(target):
        print(f"{target}: no data yet — nothing to verify.")
        return 0
    lines = (
        verify_spine_generic(target, Path(args.filelist) if args.filelist else None)
        if args.dataset == "spine-generic"
        else verify_gmchallenge(target)
    )
    print(f"{target}: layout OK")
    for ln in lines:
        print("  " + ln)
    return 0
