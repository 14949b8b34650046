"""Multi-contrast training (``data.contrast`` a list or ``all``, data_modules/contrasts.py): one tiny fit on a
three-contrast phantom; its test scores every (subject, contrast) once, each equal to a single-contrast
``cordbench test`` of the same checkpoint; the per-contrast summary and leaderboard; ``predict`` of any
contrast."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cordbench.cli import main
from core.errors import ConfigError, InputError
from data_modules import contrasts
from data_modules.phantom import generate_cohort
from tests.support.gmchallenge import TINY_FIT_ARGS

#: the phantom's contrasts of 5 mm slices (cheap to train and score), listed by their short names -> BIDS chains
CHAINS = {"T2star": "T2star", "MTon": "flip-1_mt-on_MTS", "MToff": "flip-2_mt-off_MTS"}
CONTRASTS = tuple(CHAINS.values())
SMALL = {"n_subjects": 3, "seed": 3, "dwi": False, "t2w_fov": 32.0, "workers": 1}
SPLIT = ["--data.split.val_fraction=0.34", "--data.split.test_fraction=0.34"]


def _args(root: Path, contrast: str) -> list[str]:
    return [*TINY_FIT_ARGS, "--data", "phantom", "--root", str(root), *SPLIT, f"--data.contrast={contrast}"]


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory) -> tuple[Path, Path]:
    """A three-contrast phantom (T2*, MT-on, MT-off) and a one-epoch tiny fit on all three."""
    base = tmp_path_factory.mktemp("multicontrast")
    root = generate_cohort(base / "phantom", contrasts=tuple(CHAINS), **SMALL)
    out = base / "run"
    assert main(["fit", *_args(root, f"[{','.join(CHAINS)}]"), "-o", str(out)]) in (0, None)
    return root, out


@pytest.mark.slow
def test_every_subject_and_contrast_scored_once_as_a_single_contrast_test(multi_run, tmp_path: Path):
    root, out = multi_run
    split = json.loads((out / "split.json").read_text())
    multi = pd.read_csv(out / "test_metrics.csv")
    assert list(multi.columns)[0] == "subject" and list(multi.columns)[-1] == "contrast"
    expected = {(f"{s}_{c}", c) for s in split["test"] for c in CONTRASTS}
    assert sorted(zip(multi["subject"], multi["contrast"])) == sorted(expected)
    ckpt = out / "checkpoints" / "best.ckpt"
    metrics = [c for c in multi.columns if c not in ("subject", "contrast")]
    assert "sc/dice" in metrics
    for contrast in CONTRASTS:
        single_out = tmp_path / contrast
        assert main(["test", *_args(root, contrast), "-o", str(single_out), "--ckpt", str(ckpt)]) in (0, None)
        assert json.loads((single_out / "split.json").read_text())["test"] == split["test"]
        single = pd.read_csv(single_out / "test_metrics.csv").set_index("subject")
        assert set(single["contrast"]) == {contrast}
        for sub in split["test"]:
            row = multi.set_index("subject").loc[f"{sub}_{contrast}"]
            for m in metrics:
                a, b = float(row[m]), float(single.loc[sub, m])
                assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-6), (contrast, sub, m)
    summary = json.loads((out / "test_summary.json").read_text())
    assert sorted(summary["by_contrast"]) == sorted(CONTRASTS)
    for contrast, part in summary["by_contrast"].items():
        dice = multi.loc[multi["contrast"] == contrast, "sc/dice"]
        assert part["n_subjects"] == len(dice)
        assert part["metrics"]["sc/dice"]["mean"] == pytest.approx(dice.mean(), abs=1e-9)
    data = json.loads((out / "data.json").read_text())
    assert data["contrasts"] == sorted(CONTRASTS) and data["preprocessing"]["contrasts"] == list(CHAINS)


@pytest.mark.slow
def test_by_contrast_leaderboard_ranks_each_contrast_on_its_own_rows(multi_run, tmp_path: Path):
    _, out = multi_run
    sweep = tmp_path / "sweep"
    (sweep / "trials").mkdir(parents=True)
    rows = []
    for tid, shift in (("t1", 0.0), ("t2", 0.05)):
        trial = sweep / "trials" / tid
        trial.mkdir()
        df = pd.read_csv(out / "test_metrics.csv")
        df["sc/dice"] = (df["sc/dice"] - shift).clip(0, 1)  # t2 worse on every image
        df.to_csv(trial / "test_metrics.csv", index=False)
        rows.append({"trial_id": tid, "status": "ok", "model": f"m{tid}", "run_dir": str(trial)})
    pd.DataFrame(rows).to_csv(sweep / "results.csv", index=False)
    lb = tmp_path / "lb"
    argv = ["leaderboard", str(sweep), "-o", str(lb), "--by-contrast", "--no-wandb", "--no-cost", "--n-boot", "200"]
    assert main(argv) in (0, None)
    multi = pd.read_csv(out / "test_metrics.csv")
    for contrast in CONTRASTS:
        table = pd.read_csv(lb / f"contrast-{contrast}" / "leaderboard.csv")
        best = table.sort_values("rank").iloc[0]
        assert best["entry"] == "mt1"
        assert best["mean"] == pytest.approx(multi.loc[multi["contrast"] == contrast, "sc/dice"].mean(), abs=1e-6)
        assert int(best["n_subjects"]) == int((multi["contrast"] == contrast).sum())


@pytest.mark.slow
def test_predict_segments_any_contrast(multi_run, tmp_path: Path):
    root, out = multi_run
    from data_modules.phantom.layout import subject_paths

    bids = tmp_path / "bids"
    shutil.copytree(root, bids)
    ckpt = str(out / "checkpoints" / "best.ckpt")
    # the model's own contrasts by default; any other on request (the same preprocessing for every contrast)
    assert main(["predict", "--ckpt", ckpt, "--bids", str(bids)]) in (0, None)
    written = sorted(p.name for p in (bids / "derivatives" / "cordbench").rglob("*.nii.gz"))
    assert written == sorted(f"sub-00{i}_{c}_label-sc_seg.nii.gz" for i in (1, 2, 3) for c in CONTRASTS)
    shutil.rmtree(bids / "derivatives" / "cordbench")
    assert main(["predict", "--ckpt", ckpt, "--bids", str(bids), "--contrast", "MToff,T2star"]) in (0, None)
    written = sorted(p.name for p in (bids / "derivatives" / "cordbench").rglob("*.nii.gz"))
    assert written == sorted(
        f"sub-00{i}_{c}_label-sc_seg.nii.gz" for i in (1, 2, 3) for c in ("flip-2_mt-off_MTS", "T2star")
    )
    image = subject_paths(bids, "sub-001")["MTon"]
    assert main(["predict", "--ckpt", ckpt, "-i", str(image), "-o", str(tmp_path / "m.nii.gz")]) in (0, None)


def test_contrast_selection_rules():
    assert contrasts.selection("T2w") is None and contrasts.selection(None) is None
    assert contrasts.selection("all") == ("all",)
    assert contrasts.selection(["T1w", "MTon"]) == ("T1w", "MTon")
    assert contrasts.matches(("MTon",), "flip-1_mt-on_MTS") and contrasts.matches(("MTon",), "acq-MTon_MTS")
    assert not contrasts.matches(("dwi",), "dwi") and contrasts.matches(("dwi",), "rec-average_dwi")
    assert contrasts.matches(("all",), "T2star") and not contrasts.matches(("T2w",), "T2star")
    for bad in ([], ["T1w", "T1w"], ["all", "T2w"], [3]):
        with pytest.raises(ConfigError, match="data.contrast"):
            contrasts.selection(bad)


def test_a_listed_contrast_without_images_is_one_line(tmp_path: Path):
    from data_modules.registry import build_datamodule
    from runs.config import load_config
    from tests.support.reliability import make_bids

    root = make_bids(tmp_path / "bids", n=3)
    cfg = load_config(overrides=["data.name=spine_generic", "data.contrast=[T2w,T1w]", f"data.root={root}"])
    with pytest.raises(InputError, match="lists 'T1w' but no subject"):
        _ = build_datamodule(cfg["data"]).specs
    with pytest.raises(ConfigError, match="has one contrast"):
        build_datamodule({**load_config(overrides=["data.name=gmchallenge"])["data"], "contrast": ["T2star"]})


def test_multi_contrast_index_splits_by_subject_with_each_contrasts_own_labels(tmp_path: Path):
    """A tiny BIDS tree (old and new MT naming): one spec per (subject, contrast) image, keyed
    ``<subject>_<chain>``, labelled with its own contrast's mask; every part of the split holds whole subjects."""
    import numpy as np

    from data_modules.registry import build_datamodule
    from runs.config import load_config
    from tests.support.reliability import cord_mask, make_bids, save

    root = make_bids(tmp_path / "bids", n=6)
    for i in range(1, 7):  # an MT-on image per subject (half old, half new names) with a smaller cord mask
        sub, chain = f"sub-{i:02d}", ("acq-MTon_MTS" if i % 2 else "flip-1_mt-on_MTS")
        img = (100 + 200 * cord_mask(radius=3.0)).astype(np.float32)
        save(root / sub / "anat" / f"{sub}_{chain}.nii.gz", img)
        lbl = root / "derivatives" / "labels" / sub / "anat" / f"{sub}_{chain}_label-SC_seg.nii.gz"
        save(lbl, cord_mask(radius=3.0).astype(np.uint8))
    cfg = load_config(overrides=["data.name=spine_generic", f"data.root={root}", "data.contrast=[T2w,MTon]"])
    dm = build_datamodule(cfg["data"])
    specs = dm.specs
    assert len(specs) == 12 and len({s.subject for s in specs}) == 12
    for s in specs:
        chain = s.meta["contrast"]
        assert s.subject == f"{s.group}_{chain}" and s.image.name.startswith(f"{s.group}_{chain}")
        assert Path(s.labels["SC"]).name.startswith(f"{s.group}_{chain}_")  # its own contrast's mask
    split = dm.make_split(specs)
    assert sorted(i for p in ("train", "val", "test") for i in split[p]) == [f"sub-{i:02d}" for i in range(1, 7)]
    single = build_datamodule(load_config(overrides=["data.name=spine_generic", f"data.root={root}"])["data"])
    assert single.make_split(single.specs) == split  # the split a single-contrast run draws
    assert dm.contrast == "T2w+MTon" and single.contrast == "T2w" and single.contrasts is None
