"""The curated mutations of ``tests/mutations/run.py``: plausible one-line bugs and the fast tests
that must catch each one.

Each entry replaces ``old`` (which must occur exactly once in ``path``) by ``new``. ``tests`` are
the fast test files (or node ids) of the mutated module; ``k`` optionally narrows them with
``pytest -k``. ``tests/test_mutations.py::AUDIT`` names the 20 mutations of the first audit of the metrics, statistics and resume code;
some appear twice (``name@suite``: once per test suite that must catch them on its own) and the
others guard the same contracts in neighbouring code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    """One source edit and the tests that must fail on it."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str
    k: str | None = None


METRICS = ("tests/test_metrics.py",)
MORPHO = ("tests/test_morphometrics.py",)
GEOMETRY = ("tests/test_reliability_geometry.py",)
STATS = ("tests/test_stats.py",)
LB_STATS = ("tests/test_leaderboard_stats.py",)
TRAINABLE = ("tests/test_sweeps_trainable.py",)
TARGETS = ("tests/test_datamodule_targets.py",)
PRECISION = ("tests/test_precision_stats.py",)

MUTATIONS: list[Mutation] = [
    # ------------------------------------------------------------------ segmentation metrics
    Mutation(
        "metrics-spacing-dropped",
        "evaluation/metrics.py",
        "dt = ndimage.distance_transform_edt(~dst_surface, sampling=spacing)",
        "dt = ndimage.distance_transform_edt(~dst_surface)",
        METRICS,
        "surface distances in voxels instead of millimetres",
    ),
    Mutation(
        "hd95-pooled",
        "evaluation/metrics.py",
        "hd95=float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))),",
        "hd95=float(np.percentile(np.concatenate([d_pt, d_tp]), 95)),",
        METRICS,
        "HD95 of the pooled distances instead of the max of the two directed percentiles",
    ),
    Mutation(
        "hausdorff-percentile-pooled",
        "evaluation/metrics.py",
        "return float(max(np.percentile(d_pt, percentile), np.percentile(d_tp, percentile)))",
        "return float(np.percentile(np.concatenate([d_pt, d_tp]), percentile))",
        METRICS,
        "hd95() (the standalone function) pooled",
    ),
    Mutation(
        "fn-from-npred",
        "evaluation/metrics.py",
        "fp, fn = npred - tp, ntarget - tp",
        "fp, fn = npred - tp, npred - tp",
        METRICS,
        "false negatives counted from the prediction",
    ),
    # ------------------------------------------------------------------------ morphometrics
    Mutation(
        "csa-cos-area",
        "analysis/shape.py",
        "area = area_raw * cosv",
        "area = area_raw",
        MORPHO,
        "CSA not angle-corrected (tests/test_morphometrics.py)",
    ),
    Mutation(
        "csa-cos-area@analyze",
        "analysis/shape.py",
        "area = area_raw * cosv",
        "area = area_raw",
        ("tests/test_study.py",),
        "CSA not angle-corrected: caught by cordbench analyze's own tests (tilt >= 20 deg)",
    ),
    Mutation(
        "csa-cos-area@leaderboard",
        "analysis/shape.py",
        "area = area_raw * cosv",
        "area = area_raw",
        ("tests/test_leaderboard_morphometrics.py",),
        "CSA not angle-corrected: caught by the leaderboard's morphometrics tests (absolute CSA)",
        k="manual_csa",
    ),
    Mutation(
        "canal-cos-dropped",
        "analysis/morphometrics.py",
        "c_area = float(canal[:, :, k].sum()) * frame.pixel_area * cosv",
        "c_area = float(canal[:, :, k].sum()) * frame.pixel_area",
        MORPHO + ("tests/test_study.py",),
        "canal area (SAC) not angle-corrected",
    ),
    Mutation(
        "tangent-axes-swapped",
        "analysis/centerline.py",
        "t_world = np.outer(fi(kf, 1), frame.c[:, 0]) + np.outer(fj(kf, 1), frame.c[:, 1])",
        "t_world = np.outer(fi(kf, 1), frame.c[:, 1]) + np.outer(fj(kf, 1), frame.c[:, 0])",
        MORPHO,
        "centerline tangent with the in-plane axes swapped",
    ),
    Mutation(
        "tilt-direction-swapped",
        "analysis/shape.py",
        "txy = np.asarray(tangent[:2], dtype=float)",
        "txy = np.asarray(tangent[1::-1], dtype=float)",
        MORPHO,
        "section compressed along the wrong in-plane direction",
    ),
    Mutation(
        "soft-threshold",
        "analysis/shape.py",
        "return (arr >= 0.5).astype(float), False",
        "return (arr > 0).astype(float), False",
        MORPHO,
        "soft mask thresholded (soft=False, binary_mask) at > 0 instead of >= 0.5",
    ),
    # ---------------------------------------------------------------------------- statistics
    Mutation(
        "fisher-n1-twice",
        "analysis/stats.py",
        "math.sqrt(1.0 / (n1 - 3) + 1.0 / (n2 - 3))",
        "math.sqrt(1.0 / (n1 - 3) + 1.0 / (n1 - 3))",
        STATS,
        "Fisher z standard error from the first sample size twice",
    ),
    Mutation(
        "fisher-one-sided-p",
        "analysis/stats.py",
        "return float(z), float(2.0 * norm.sf(abs(z)))",
        "return float(z), float(norm.sf(abs(z)))",
        STATS,
        "one-sided p for a two-sided test",
    ),
    Mutation(
        "fisher-ci-level",
        "analysis/stats.py",
        "h = norm.ppf(0.5 + conf / 2)",
        "h = norm.ppf(conf)",
        STATS,
        "90% CI labelled 95%",
    ),
    Mutation(
        "bootstrap-range",
        "core/bootstrap.py",
        "idx = rng.integers(0, x.size, size=(stop - start, x.size))",
        "idx = rng.integers(0, x.size - 1, size=(stop - start, x.size))",
        LB_STATS,
        "bootstrap never resamples the last value",
    ),
    Mutation(
        "bootstrap-ci-level",
        "core/bootstrap.py",
        "alpha = (1.0 - level) / 2.0",
        "alpha = 1.0 - level",
        LB_STATS,
        "bootstrap 90% interval labelled 95%",
    ),
    Mutation(
        "holm-multipliers",
        "leaderboard/stats.py",
        "(m - np.arange(m)) * p[order]",
        "(np.arange(m) + 1) * p[order]",
        LB_STATS,
        "Holm step-down multipliers reversed",
    ),
    Mutation(
        "lb-failure-dropped",
        "leaderboard/protocol.py",
        'long.loc[failed, "value"] = worst',
        'long.loc[failed, "value"] = np.nan',
        ("tests/test_reliability_attribution.py",),
        "a failed subject (infinite distance) dropped as missing: the failing model looks better",
        k="infinite_distance",
    ),
    Mutation(
        "stats-intercept-unscaled",
        "analysis/stats.py",
        "slope, intercept = slope * (sy / sx), intercept * sy",
        "slope, intercept = slope * (sy / sx), intercept",
        ("tests/test_reliability_stats_inputs.py",),
        "the line's intercept left on the scaled axis (values near 1e300)",
        k="1e300",
    ),
    # ------------------------------------------------------------- data: preprocessing and its cache
    Mutation(
        "normalisation-order-swapped",
        "data_modules/preprocessing.py",
        '    if pre.normalisation == "zscore":\n',
        '    if pre.normalisation == "zscore-after-crop":\n',
        ("tests/test_preprocessing.py",),
        "the two normalisation modes apply crop and z-score in swapped order",
        k="normalisation_order",
    ),
    Mutation(
        "cache-key-without-stage",
        "data_modules/cache.py",
        '"stage": stage,\n',
        "",
        ("tests/test_fast_pipeline.py",),
        "train (label-cropped) and eval cache entries of a subject share one key",
        k="apart",
    ),
    # ----------------------------------------------------------------------- data: BIDS, grids
    Mutation(
        "bids-label-key-no-session",
        "data_modules/bids.py",
        'key = (lm.group("sub"), lm.group("ses"), dt, lm.group("contrast"))',
        'key = (lm.group("sub"), None, dt, lm.group("contrast"))',
        ("tests/test_bids.py",),
        "labels paired with images ignoring the session",
    ),
    Mutation(
        "bids-label-key-no-datatype",
        "data_modules/bids.py",
        'key = (lm.group("sub"), lm.group("ses"), dt, lm.group("contrast"))',
        'key = (lm.group("sub"), lm.group("ses"), "anat", lm.group("contrast"))',
        ("tests/test_bids.py",),
        "labels paired with images ignoring the datatype folder",
    ),
    Mutation(
        "writeback-half-voxel",
        "evaluation/native.py",
        "target = (tuple(int(s) for s in native_shape[:3]), np.asarray(native_affine, dtype=float))",
        "target = (tuple(int(s) for s in native_shape[:3]), np.asarray(native_affine, dtype=float)"
        " @ np.array([[1, 0, 0, .5], [0, 1, 0, .5], [0, 0, 1, .5], [0, 0, 0, 1.]]))",
        ("tests/test_native.py",),
        "predictions written back half a voxel off",
    ),
    Mutation(
        "irp-spacing-unpermuted",
        "evaluation/scoring.py",
        "spacing = tuple(float(zooms[int(i)]) for i in np.argsort(ornt[:, 0]))",
        "spacing = tuple(float(z) for z in zooms)",
        ("tests/test_native.py",),
        "native-grid scores with the voxel sizes in the stored axis order, not the IRP one",
        k="own_spacing",
    ),
    Mutation(
        "irp-spacing-forward-permutation",
        "evaluation/scoring.py",
        "spacing = tuple(float(zooms[int(i)]) for i in np.argsort(ornt[:, 0]))",
        "spacing = tuple(float(zooms[int(i)]) for i in ornt[:, 0])",
        ("tests/test_native.py",),
        "IRP voxel sizes permuted the wrong way round (differs for 3-cycles such as RAS -> IRP)",
        k="own_spacing",
    ),
    Mutation(
        "mirrored-target",
        "data_modules/base.py",
        "                target[lbl > 0] = value\n        return target\n",
        "                target[lbl > 0] = value\n        return target[::-1].copy()\n",
        TARGETS,
        "training target mirrored against its image (base data module: phantom, spine-generic)",
    ),
    Mutation(
        "mirrored-target@datamodules",
        "data_modules/base.py",
        "                target[lbl > 0] = value\n        return target\n",
        "                target[lbl > 0] = value\n        return target[::-1].copy()\n",
        ("tests/test_datamodules.py",),
        "mirrored target caught by the phantom data-module tests",
        k="target_matches",
    ),
    Mutation(
        "mirrored-target-gm",
        "data_modules/gmchallenge_dm.py",
        "return to_task_target(fused, self.task.name)",
        "return to_task_target(fused, self.task.name)[::-1]",
        TARGETS,
        "GM challenge target mirrored against its image",
        k="gm_challenge",
    ),
    Mutation(
        "mirrored-levels-target",
        "data_modules/levels.py",
        "return np.where(levels <= max_level, levels, 0).astype(np.int16)",
        "return np.where(levels <= max_level, levels, 0).astype(np.int16)[::-1]",
        TARGETS,
        "levels target (from SC + discs) mirrored against its image",
        k="discs",
    ),
    Mutation(
        "dwi-levels-area-check-dropped",
        "analysis/dwi_levels.py",
        "if np.isfinite(still) and not moved <= AREA_TOLERANCE * still:",
        "if False:",
        ("tests/test_dwi_levels.py",),
        "centreline shift applied although the cord-area profile contradicts it (a rotation taken for a slide)",
        k="rotation",
    ),
    # ------------------------------------------------------------------------- real labelled scans
    Mutation(
        "real-automatic-as-manual",
        "data_modules/real.py",
        '"seg-deepseg": ("SC", AUTOMATIC)}',
        '"seg-deepseg": ("SC", MANUAL)}',
        ("tests/test_real.py",),
        "sct_deepseg_sc's automatic cord mask counted as ground truth",
        k="sct_testing_data",
    ),
    Mutation(
        "real-wm-whole-cord",
        "runs/real_eval.py",
        'return masks["SC"] & ~masks["GM"]',
        'return masks["SC"]',
        ("tests/test_real_eval.py",),
        "wm scored against the whole cord instead of cord minus GM",
        k="without_a_model",
    ),
    Mutation(
        "real-eval-any-label-as-class",
        "runs/real_eval.py",
        "record.update(class_metrics(np.isin(labels, values), reference_mask(cls, masks), affine, cls))",
        "record.update(class_metrics(labels > 0, reference_mask(cls, masks), affine, cls))",
        ("tests/test_real_eval.py",),
        "every non-zero label counted as the class (GM-task model: gm = wm = cord)",
        k="own_labels",
    ),
    # ------------------------------------------------------------------------ label-free inference rules
    Mutation(
        "inference-whole-image-rules-cropped",
        "data_modules/preprocessing.py",
        '    elif pre.crop is not None and pre.inference == "centre":\n',
        "    elif pre.crop is not None:\n",
        ("tests/test_inference_rules.py",),
        "sliding/localise get the FOV-centred crop: the cord outside it is still cut off",
        k="whole_slice",
    ),
    Mutation(
        "inference-old-checkpoints-get-the-new-rule",
        "data_modules/preprocessing.py",
        '    inference: str = "centre"',
        '    inference: str = "localise"',
        ("tests/test_inference_rules.py",),
        "a checkpoint that recorded no rule is run with another one: its numbers change",
        k="old_contract",
    ),
    Mutation(
        "inference-track-not-interpolated",
        "lightning_modules/volume.py",
        "            if any(z in centres for z in found):\n",
        "            if True:\n",
        ("tests/test_inference_rules.py",),
        "only the largest piece of a cord broken by missed slices is followed",
        k="track",
    ),
    # ---------------------------------------------------------------------------------- phantom
    Mutation(
        "phantom-records-later-randomise-defaults",
        "data_modules/phantom/randomise_options.py",
        "            if d[name] == default:\n",
        '            if name == "templates" and d[name] == default:\n',
        ("tests/test_phantom_contrasts.py",),
        "blend_prob is recorded at its default: every earlier randomised cohort changes its record and cache folder",
        k="byte_identical",
    ),
    Mutation(
        "multi-contrast-split-by-image",
        "data_modules/base.py",
        "            units.setdefault(s.unit, SubjectSpec(s.unit, s.image, meta=s.meta))\n",
        "            units.setdefault(s.subject, SubjectSpec(s.subject, s.image, meta=s.meta))\n",
        ("tests/test_multicontrast.py",),
        "a multi-contrast run splits images, not subjects: one subject's contrasts in training and in test",
        k="splits_by_subject",
    ),
    Mutation(
        "phantom-records-drawn-spacing",
        "data_modules/phantom/randomise.py",
        "        spacing = spacing * (grid.n_voxels / ro.max_voxels) ** (1 / 3)\n"
        "        grid = make_grid(pts, tuple(spacing), code, rot)\n",
        "        grid = make_grid(pts, tuple(spacing * (grid.n_voxels / ro.max_voxels) ** (1 / 3)), code, rot)\n",
        ("tests/test_phantom_randomise.py",),
        "randomised phantom records the drawn voxel sizes, not those written after the voxel-count rescale",
        k="rescale",
    ),
    # ----------------------------------------------------------------------------- networks
    Mutation(
        "xca-softmax-axis",
        "lightning_modules/networks/_transformer.py",
        "* self.temperature).softmax(dim=-1))  # B h d d",
        "* self.temperature).softmax(dim=-2))  # B h d d",
        ("tests/test_models.py",),
        "XCA softmax over the wrong channel axis",
        k="xca or XCA",
    ),
    Mutation(
        "xca-temperature",
        "lightning_modules/networks/_transformer.py",
        "* self.temperature).softmax(dim=-1))  # B h d d",
        "/ self.temperature).softmax(dim=-1))  # B h d d",
        ("tests/test_models.py",),
        "XCA temperature divides instead of multiplies",
        k="xca or XCA",
    ),
    Mutation(
        "swin-merge-layout",
        "lightning_modules/networks/_pretrained_swin.py",
        'level = int(m[1]) - (1 if layout == "timm" else 0)',
        "level = int(m[1])",
        ("tests/test_pretrained.py",),
        "timm's patch merging (start of stage N+1) loaded into merges.N+1",
    ),
    Mutation(
        "pretrained-rgb-mean",
        "lightning_modules/networks/_pretrained.py",
        "return weight.sum(dim=1, keepdim=True)",
        "return weight.mean(dim=1, keepdim=True)",
        ("tests/test_pretrained.py",),
        "RGB patch kernel averaged instead of summed (input 3× too weak)",
    ),
    # ------------------------------------------------------------------- sweep resume bookkeeping
    Mutation(
        "resume-metrics-lt",
        "sweeps/trainable.py",
        'prev = prev[prev["epoch"] <= resume_epoch]',
        'prev = prev[prev["epoch"] < resume_epoch]',
        TRAINABLE,
        "the restored epoch's metrics row dropped on resume",
    ),
    Mutation(
        "resume-report-lt",
        "sweeps/tune_report.py",
        "if epoch <= self.resume_epoch or",
        "if epoch < self.resume_epoch or",
        TRAINABLE,
        "the restored epoch reported to Tune twice",
    ),
    Mutation(
        "resume-merge-drops-previous",
        "sweeps/trainable.py",
        "frames = [pd.read_csv(prev_path)] + ([pd.read_csv(path)] if path.exists() else [])",
        "frames = [pd.read_csv(path)] if path.exists() else []",
        TRAINABLE,
        "earlier attempts' metrics rows lost after a restore",
    ),
    Mutation(
        "finished-record-ignored",
        "sweeps/trainable.py",
        "done = remote.finished_record() if remote else finished_record(run_dir)\n",
        "done = None\n",
        TRAINABLE,
        "a finished trial trained again after the driver restarts",
    ),
    Mutation(
        "slice-axis-not-along-cord",
        "analysis/slicing.py",
        "if d is not None and nearest_voxel_axis(aff, d)[0] != slice_axis(aff):",
        "if False:",
        GEOMETRY,
        "a grid rotated far from the cord sliced along it (SCT's axis kept): CSA off by up to 300 %",
        k="affine_rotated_60",
    ),
    Mutation(
        "canal-containment-unchecked",
        "analysis/slicing.py",
        "if n and out > MAX_CORD_OUTSIDE_CANAL * n:",
        "if False:",
        GEOMETRY,
        "--seg and --canal swapped: negative SAC written",
        k="swapped",
    ),
    Mutation(
        "steep-slices-unsaid",
        "analysis/slicing.py",
        "steep = np.asarray(angles_deg) > ANGLE_LIMIT_DEG",
        "steep = np.asarray(angles_deg) > 90.0",
        GEOMETRY,
        "slices cut more than 50 deg from the cord's normal measured without a warning",
        k="no_voxel_axis",
    ),
    Mutation(
        "resume-unsigned-pickle-trusted",
        "sweeps/signing.py",
        "if key is not None and signature(key, rel, storage.read_bytes(path)) in record.get(rel, ()):",
        "if key is not None and record.get(rel):",
        ("tests/test_reliability_resume_security.py",),
        "a signed state file replaced afterwards is unpickled on resume (the content is not checked)",
        k="signed_path_with_other_content",
    ),
    Mutation(
        "results-finished-row-dropped",
        "sweeps/results.py",
        "out += [dict(r) for tid, r in finished.items() if tid not in listed]",
        "out += []",
        ("tests/test_reliability_history.py",),
        "a finished trial Ray's restored state no longer lists loses its results.csv row",
        k="results_csv",
    ),
    # ------------------------------------------------------------------ ensembles and TTA
    Mutation(
        "tta-flip-not-undone",
        "evaluation/ensemble.py",
        "torch.flip(module.predict_volume(torch.flip(volume, dims=[dim]))[0], dims=[dim - 1])",
        "module.predict_volume(torch.flip(volume, dims=[dim]))[0]",
        ("tests/test_ensemble.py",),
        "the mirrored pass averaged without mirroring its probabilities back",
        k="flip",
    ),
    Mutation(
        "ensemble-sum-not-mean",
        "evaluation/ensemble.py",
        "        return self.total / self.passes\n",
        "        return self.total / max(1, self.passes - 1)\n",
        ("tests/test_ensemble.py",),
        "an ensemble's probabilities divided by the wrong count (no longer probabilities)",
        k="self_ensemble or contracts",
    ),
    # ------------------------------------------------------------------ precision columns
    Mutation(
        "icc-k-factor-dropped",
        "leaderboard/precision_stats.py",
        "icc = (ms_r - ms_e) / (ms_r + (k - 1) * ms_e)",
        "icc = (ms_r - ms_e) / (ms_r + ms_e)",
        PRECISION,
        "ICC(3,1) without the (k - 1) weight of the error mean square (right only for two sessions)",
    ),
    Mutation(
        "cov-population-sd",
        "leaderboard/precision_stats.py",
        "return float(100.0 * v.std(ddof=1) / v.mean())",
        "return float(100.0 * v.std() / v.mean())",
        PRECISION,
        "CoV with the population SD (ddof 0): too small by sqrt((n-1)/n)",
    ),
    Mutation(
        "loa-sd-of-bias",
        "leaderboard/precision_stats.py",
        "return mean, mean - Z_LOA * sd, mean + Z_LOA * sd",
        "return mean, mean - Z_LOA * sd / np.sqrt(n), mean + Z_LOA * sd / np.sqrt(n)",
        PRECISION,
        "limits of agreement from the standard error of the bias instead of the SD of the differences",
    ),
    # ------------------------------------------------------------------ PMJ CSA, QC decisions
    Mutation(
        "pmj-distance-slice-axis-only",
        "analysis/pmj.py",
        "pts = np.stack([fi(kq, 0), fj(kq, 0), kq], axis=1) @ np.asarray(affine_rpi, float)[:3, :3].T",
        "pts = np.stack([0 * kq, 0 * kq, kq], axis=1) @ np.asarray(affine_rpi, float)[:3, :3].T",
        ("tests/test_pmj.py",),
        "distance from the PMJ along the slice axis instead of along the (tilted) centerline",
    ),
    Mutation(
        "pmj-window-full-extent",
        "analysis/pmj.py",
        "zmin = int(d.slices[np.argmin(np.abs(d.distance - (distance + extent / 2)))])",
        "zmin = int(d.slices[np.argmin(np.abs(d.distance - (distance + extent)))])",
        ("tests/test_pmj.py",),
        "PMJ window reaching a whole extent below the distance instead of half of it",
    ),
    Mutation(
        "exclude-reason-dropped",
        "analysis/exclusions.py",
        "note = excl.notes.get(str(entry))",
        "note = None",
        ("tests/test_qc_decisions.py",),
        "the reviewer's reason (the entry's comment) lost between the exported exclude.yml and the report",
    ),
]
