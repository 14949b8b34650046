"""Morphometrics: synthetic tubes with known CSA (tilted, permuted, oblique grids), SCT-style
aggregation, an independent per-level CSA on the real t2 data, and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.centerline import SliceFrame, fit_centerline, to_rpi
from analysis.morphometrics import (
    aggregate,
    compute_perslice,
    format_num_list,
    morphometrics_from_files,
    parse_vert,
    sct_columns,
    slice_levels,
    slice_shape,
)
from core.errors import InputError
from tests.references import independent_csa


def _rot(ax: float, ay: float) -> np.ndarray:
    """Rotation about x then y (degrees)."""
    a, b = np.radians(ax), np.radians(ay)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rx


def _grid(oblique: float, permuted: bool, spacing=(0.5, 0.5, 1.0), shape=(64, 64, 50)):
    """An affine (optionally PSR-permuted and rotated) and the world centre of the grid."""
    sx, sy, sz = spacing
    if permuted:  # voxel axes: 0 → anterior (P→A), 1 → superior, 2 → right; like sct t2 (PSR)
        base = np.array([[0, 0, -sx], [sy, 0, 0], [0, sz, 0]], dtype=float)
        shape = (shape[1], shape[2], shape[0])
    else:
        base = np.diag([sx, sy, sz]).astype(float)
    aff = np.eye(4)
    aff[:3, :3] = _rot(oblique, oblique / 2) @ base
    aff[:3, 3] = [-12.0, 7.0, -30.0]
    centre = aff[:3, :3] @ ((np.array(shape) - 1) / 2.0) + aff[:3, 3]
    return aff, shape, centre


def _tube(shape, aff, centre, direction, radius=None, semi=None, ref_dir=(1.0, 0.0, 0.0)):
    """Voxelise an elliptical tube (semi-axes ``semi`` = (a along ref_dir⊥, b)) or a circular one."""
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    w = idx @ aff[:3, :3].T + aff[:3, 3] - centre
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    perp = w - np.outer(w @ d, d)
    if semi is None:
        inside = np.linalg.norm(perp, axis=1) <= radius
    else:
        u = np.asarray(ref_dir, float) - (np.dot(ref_dir, d)) * d
        u /= np.linalg.norm(u)
        v = np.cross(d, u)
        inside = (perp @ u / semi[0]) ** 2 + (perp @ v / semi[1]) ** 2 <= 1.0
    return inside.reshape(shape)


def _tilt_dir(tilt_deg: float, azimuth_deg: float) -> np.ndarray:
    t, a = np.radians(tilt_deg), np.radians(azimuth_deg)
    return np.array([np.sin(t) * np.cos(a), np.sin(t) * np.sin(a), np.cos(t)])


@pytest.mark.parametrize(
    "tilt,azimuth,oblique,permuted",
    [(3, 200, 0, False), (12, 30, 0, True), (25, 0, 0, False), (25, 120, 10, True), (18, 250, 20, False)],
)
def test_tilted_tube_csa_within_2pct(tilt, azimuth, oblique, permuted):
    aff, shape, centre = _grid(oblique, permuted)
    r = 4.0
    mask = _tube(shape, aff, centre, _tilt_dir(tilt, azimuth), radius=r)
    data, a_rpi = to_rpi(mask, aff)
    ps = compute_perslice(data, a_rpi)
    inner = ps.iloc[6:-6]  # ends are cut obliquely by the grid's top and bottom faces
    truth = np.pi * r * r
    assert abs(inner["area"].mean() / truth - 1) < 0.02
    # the fitted angle matches the planted tilt relative to the slice normal
    frame = SliceFrame.from_affine(a_rpi)
    d_frame = frame.to_frame(_tilt_dir(tilt, azimuth))
    true_angle = np.degrees(np.arccos(abs(d_frame[2])))
    # without angle correction the raw area overestimates by 1/cos(angle) (+10% at 25°)
    assert abs(inner["area_raw"].mean() * np.cos(np.radians(true_angle)) / truth - 1) < 0.02
    tz = 1.0 / np.sqrt(1 + np.tan(np.radians(inner["angle_AP"])) ** 2 + np.tan(np.radians(inner["angle_RL"])) ** 2)
    fitted = np.degrees(np.arccos(tz))
    assert abs(fitted.mean() - true_angle) < 1.0
    assert np.allclose(inner["diameter_AP_ellipse"].mean(), 2 * r, rtol=0.03)
    assert np.allclose(inner["diameter_RL"].mean(), 2 * r, rtol=0.03)
    # rotated profile: mean chord of a circle over a 3 mm band through its centre
    band = np.linspace(-1.5, 1.5, 20001)
    assert np.allclose(inner["diameter_AP"].mean(), np.mean(2 * np.sqrt(r * r - band**2)), rtol=0.03)


def test_straight_tube_is_not_corrected():
    """A tube along the slice normal: angles 0, area = voxel count × pixel area exactly."""
    aff, shape, centre = _grid(0, False)
    mask = _tube(shape, aff, centre + [0.23, 0.37, 0.0], (0, 0, 1), radius=4.0)
    data, a_rpi = to_rpi(mask, aff)
    ps = compute_perslice(data, a_rpi)
    assert np.allclose(ps["angle_AP"], 0, atol=1e-9) and np.allclose(ps["angle_RL"], 0, atol=1e-9)
    assert np.allclose(ps["area"], data.sum(axis=(0, 1))[ps["Slice (I->S)"]] * 0.25)
    assert np.allclose(ps["length"], 1.0)


def test_elliptical_tube_diameters_tilted_about_ap():
    aff, shape, centre = _grid(0, False)
    # semi-axes 6 mm (RL, world x) and 4 mm (AP); tilted 20° about the AP axis (in the x–z plane)
    mask = _tube(shape, aff, centre, _tilt_dir(20, 0), semi=(6.0, 4.0), ref_dir=(1.0, 0.0, 0.0))
    data, a_rpi = to_rpi(mask, aff)
    inner = compute_perslice(data, a_rpi).iloc[6:-6]
    assert abs(inner["area"].mean() / (np.pi * 24) - 1) < 0.02
    assert inner["diameter_RL"].mean() == pytest.approx(12.0, rel=0.03)
    assert inner["diameter_AP_ellipse"].mean() == pytest.approx(8.0, rel=0.03)
    band = np.linspace(-1.5, 1.5, 20001)
    assert inner["diameter_AP"].mean() == pytest.approx(np.mean(8.0 * np.sqrt(1 - (band / 6.0) ** 2)), rel=0.03)
    assert (inner["length_anterior"] + inner["length_posterior"]).to_numpy() == pytest.approx(
        inner["diameter_AP"].to_numpy()
    )
    assert inner["orientation"].abs().mean() < 10
    assert inner["eccentricity"].mean() == pytest.approx(np.sqrt(1 - (4 / 6) ** 2), abs=0.03)
    assert abs(abs(inner["angle_AP"].mean()) - 20) < 1.0 and abs(inner["angle_RL"].mean()) < 1.0


def test_shape_equals_regionprops_with_spacing_when_straight():
    from skimage.measure import regionprops

    rng = np.random.default_rng(0)
    sl = np.zeros((40, 30), bool)
    yy, xx = np.mgrid[:40, :30]
    sl[((yy - 20) / 9.0) ** 2 + ((xx - 14) / 5.0) ** 2 + 0.1 * rng.random((40, 30)) <= 1] = True
    aff = np.diag([0.4, 0.7, 2.0, 1.0])
    frame = SliceFrame.from_affine(aff)
    shp = slice_shape(sl, frame, tangent=None)
    ref = regionprops(sl.astype(np.uint8), spacing=(0.4, 0.7))[0]
    assert shp.area == pytest.approx(sl.sum() * 0.28)
    assert shp.eccentricity == pytest.approx(ref.eccentricity, rel=1e-6)
    major, minor = ref.axis_major_length, ref.axis_minor_length
    assert sorted([shp.diameter_AP_ellipse, shp.diameter_RL]) == pytest.approx([minor, major], rel=1e-6)
    assert shp.solidity == pytest.approx(ref.solidity)
    # major axis along axis 0 (RL in RPI) → orientation near 0 and it is the RL diameter
    assert abs(shp.orientation) < 45 and shp.diameter_RL == pytest.approx(major, rel=1e-6)
    # signed orientation: skimage's, in degrees
    assert shp.orientation == pytest.approx(np.degrees(ref.orientation), abs=1e-6)


def test_canal_sac_and_ratio_within_3pct():
    aff, shape, centre = _grid(15, True, shape=(100, 100, 50))
    d = _tilt_dir(22, 60)
    cord = _tube(shape, aff, centre, d, radius=4.0)
    canal = _tube(shape, aff, centre, d, radius=7.0)
    s, a = to_rpi(cord, aff)
    c, _ = to_rpi(canal, aff)
    inner = compute_perslice(s, a, canal_rpi=c).iloc[6:-6]
    sac = np.pi * (49 - 16)
    assert abs(inner["SAC"].mean() / sac - 1) < 0.03
    assert abs(inner["SAC_CSA"].mean() / (sac / (np.pi * 16)) - 1) < 0.03
    assert abs(inner["canal_area"].mean() / (np.pi * 49) - 1) < 0.02


def test_slice_levels_rounded_mean_and_empty_slices():
    lv = np.zeros((4, 4, 3))
    lv[:, :2, 0] = 3
    lv[:, 2:, 0] = 4  # mean 3.5 → numpy rounds half to even → 4
    lv[:3, :, 1] = 2
    lv[3, :, 1] = 3  # mean 2.25 → 2
    out = slice_levels(lv)
    assert out[0] == 4 and out[1] == 2 and np.isnan(out[2])


def test_format_and_parse_levels():
    assert format_num_list([1, 2, 3, 5, 7, 8]) == "1:3;5;7:8"
    assert format_num_list([4]) == "4"
    assert parse_vert("2:4") == [2, 3, 4] and parse_vert("2,5") == [2, 5] and parse_vert(None) is None
    with pytest.raises(InputError):
        parse_vert("a:b")


def _labelled_tube():
    aff, shape, centre = _grid(0, False, shape=(40, 40, 30))
    cord = _tube(shape, aff, centre, _tilt_dir(10, 0), radius=4.0)
    levels = np.zeros(shape, np.int16)
    for k in range(shape[2]):
        levels[:, :, k][cord[:, :, k]] = 1 + k // 10  # 10 slices per level
    return aff, cord, levels


def test_aggregate_per_level_range_and_perslice():
    aff, cord, levels = _labelled_tube()
    s, a = to_rpi(cord, aff)
    lv, _ = to_rpi(levels, aff)
    ps = compute_perslice(s, a, lv)
    per_level = aggregate(ps, "x.nii.gz")
    assert list(per_level.columns) == sct_columns(with_canal=False)
    assert list(per_level["VertLevel"]) == ["1", "2", "3"]
    g2 = ps[ps["VertLevel"] == 2]
    assert per_level.loc[1, "MEAN(area)"] == pytest.approx(g2["area"].mean())
    assert per_level.loc[1, "STD(area)"] == pytest.approx(g2["area"].std(ddof=0))
    assert per_level.loc[1, "SUM(length)"] == pytest.approx(g2["length"].sum())
    assert per_level.loc[1, "Slice (I->S)"] == "10:19"
    rng = aggregate(ps, "x.nii.gz", vert=[2, 3])
    assert len(rng) == 1 and rng.loc[0, "VertLevel"] == "2:3"
    g23 = ps[ps["VertLevel"].isin([2, 3])]
    assert rng.loc[0, "MEAN(diameter_AP)"] == pytest.approx(g23["diameter_AP"].mean())
    assert rng.loc[0, "MEAN(diameter_AP_ellipse)"] == pytest.approx(g23["diameter_AP_ellipse"].mean())
    assert (per_level["mask_type"] == "binary").all()
    both = aggregate(ps, "x.nii.gz", vert=[2, 3], perlevel=True)
    assert list(both["VertLevel"]) == ["2", "3"]
    rows = aggregate(ps, "x.nii.gz", perslice_rows=True)
    assert len(rows) == len(ps) and rows["STD(area)"].eq(0).all()


def test_real_t2_per_level_csa_matches_independent_computation(sct_data):
    """Independent path: nibabel canonical (RAS) orientation, mm centroids, cubic polyfit centerline."""
    import nibabel as nib

    seg_p = sct_data / "t2" / "t2_seg-manual.nii.gz"
    lab_p = sct_data / "t2" / "t2_seg-manual_labeled.nii.gz"
    seg = nib.load(str(seg_p))
    ref = independent_csa(np.asanyarray(seg.dataobj), np.asanyarray(nib.load(str(lab_p)).dataobj), seg.affine)

    ps = morphometrics_from_files(seg_p, lab_p)
    out = aggregate(ps, seg_p.name)
    got = {int(r["VertLevel"]): r["MEAN(area)"] for _, r in out.iterrows()}
    assert sorted(got) == sorted(ref) == [2, 3, 4, 5]
    for L in ref:
        assert abs(got[L] / ref[L] - 1) < 0.01, (L, got[L], ref[L])


def test_real_t2s_oblique_anisotropic_runs(sct_data):
    """t2s: LAS, oblique, 0.5×0.5×7.5 mm — every slice with cord gets a finite CSA."""
    ps = morphometrics_from_files(sct_data / "t2s" / "t2s_seg-deepseg.nii.gz")
    assert len(ps) > 0 and np.isfinite(ps["area"]).all() and (ps["area"] > 20).all()


def test_binary_mask_thresholds():
    """The binarisation rule (binary masks, and soft masks measured with the 0.5 threshold):
    integer labels (any integer dtype, or floats holding integers) → > 0; values in [0, 1] → >= 0.5."""
    from analysis.morphometrics import binary_mask

    labels = np.array([0, 1, 2, 3, 0], np.uint8)
    assert binary_mask(labels, "x").tolist() == [False, True, True, True, False]
    assert binary_mask(np.array([0.0, 1.0, 2.0, 1.0002]), "x").tolist() == [False, True, True, True]
    soft = np.array([0.0, 0.05, 0.3, 0.4999, 0.5, 0.51, 0.9, 1.0], np.float32)
    assert binary_mask(soft, "x").tolist() == [False, False, False, False, True, True, True, True]
    with pytest.raises(InputError, match="negative"):
        binary_mask(np.array([-0.2, 0.5]), "seg.nii.gz")
    with pytest.raises(InputError, match="neither an integer label map nor a soft mask"):
        binary_mask(np.array([0.0, 0.5, 1.7]), "seg.nii.gz")


def test_bad_inputs_name_the_file(tmp_path):
    import nibabel as nib

    aff, cord, levels = _labelled_tube()
    nib.save(nib.Nifti1Image(cord.astype(np.uint8), aff), str(tmp_path / "seg.nii.gz"))
    nib.save(nib.Nifti1Image(levels[:-1], aff), str(tmp_path / "lv.nii.gz"))
    with pytest.raises(InputError, match="lv.nii.gz"):
        morphometrics_from_files(tmp_path / "seg.nii.gz", tmp_path / "lv.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), aff), str(tmp_path / "empty.nii.gz"))
    with pytest.raises(InputError, match="empty"):
        morphometrics_from_files(tmp_path / "empty.nii.gz")
    with pytest.raises(InputError, match="missing.nii.gz"):
        morphometrics_from_files(tmp_path / "missing.nii.gz")


def test_cli_morphometrics(tmp_path):
    import nibabel as nib

    from cordbench.cli import main

    aff, cord, levels = _labelled_tube()
    canal = _tube(cord.shape, aff, _grid(0, False, shape=(40, 40, 30))[2], _tilt_dir(10, 0), radius=7.0)
    for name, arr in [("seg", cord.astype(np.uint8)), ("lv", levels), ("canal", canal.astype(np.uint8))]:
        nib.save(nib.Nifti1Image(arr, aff), str(tmp_path / f"{name}.nii.gz"))
    out = tmp_path / "out" / "csa.csv"
    rc = main(
        [
            "morphometrics",
            "--seg",
            str(tmp_path / "seg.nii.gz"),
            "--levels",
            str(tmp_path / "lv.nii.gz"),
            "--canal",
            str(tmp_path / "canal.nii.gz"),
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    df = pd.read_csv(out)
    assert list(df.columns) == sct_columns(with_canal=True)
    assert df["MEAN(SAC)"].between(np.pi * 33 * 0.95, np.pi * 33 * 1.05).all()
    rc = main(
        [
            "morphometrics",
            "--seg",
            str(tmp_path / "seg.nii.gz"),
            "--levels",
            str(tmp_path / "lv.nii.gz"),
            "--vert",
            "1:2",
            "--perslice",
            "-o",
            str(tmp_path / "ps.csv"),
        ]
    )
    assert rc == 0 and len(pd.read_csv(tmp_path / "ps.csv")) == 20
    rc = main(["morphometrics", "--seg", str(tmp_path / "nope.nii.gz"), "-o", str(out)])
    assert rc == 2
    # a soft mask: detected (partial volume), or thresholded at 0.5 with --no-soft
    soft = np.clip(cord.astype(float) * 0.8 + 0.15 * np.roll(cord, 1, axis=0), 0, 1)
    nib.save(nib.Nifti1Image(soft.astype(np.float32), aff), str(tmp_path / "soft.nii.gz"))
    for flag, kind in ((None, "soft"), ("--no-soft", "binary"), ("--soft", "soft")):
        o = tmp_path / f"soft_{kind}_{flag}.csv"
        rc = main(["morphometrics", "--seg", str(tmp_path / "soft.nii.gz"), "-o", str(o)] + ([flag] if flag else []))
        assert rc == 0 and set(pd.read_csv(o)["mask_type"]) == {kind}


def test_centerline_polyfit_and_bspline_agree_on_straight_tilt():
    aff, shape, centre = _grid(0, False)
    mask = _tube(shape, aff, centre, _tilt_dir(15, 45), radius=4.0)
    s, a = to_rpi(mask, aff)
    f = SliceFrame.from_affine(a)
    c1 = fit_centerline(s, f, "bspline")
    c2 = fit_centerline(s, f, "polyfit")
    assert np.allclose(c1.cos_angle[5:-5], np.cos(np.radians(15)), atol=0.01)
    assert np.allclose(c2.cos_angle[5:-5], np.cos(np.radians(15)), atol=0.01)


def _stenosed_canal(shape, aff, centre, d, r0=7.0, depth=2.5, width=4.0):
    """Canal radius r(s) = r0 − depth·exp(−(s/width)²) along axis d through centre; returns mask and r(s)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    w = idx @ aff[:3, :3].T + aff[:3, 3] - centre
    s = w @ d
    perp = np.linalg.norm(w - np.outer(s, d), axis=1)

    def radius(x):
        return r0 - depth * np.exp(-((np.asarray(x) / width) ** 2))

    return (perp <= radius(s)).reshape(shape), radius


def test_volume_method_exact_where_oblique_slices_mix_a_stenosis():
    """Tilt 25° through a sharp canal narrowing: axial slices overestimate the stenotic canal;
    volume / arc length recovers the perpendicular cross-section mean."""
    from analysis.morphometrics import per_level_table, volume_per_level

    aff, shape, centre = _grid(10, False, spacing=(0.5, 0.5, 0.5), shape=(110, 110, 100))
    d = _tilt_dir(25, 30)
    cord = _tube(shape, aff, centre, d, radius=4.0)
    canal, radius = _stenosed_canal(shape, aff, centre, d)
    # levels: perpendicular slabs of 8 mm along the axis (as the phantom's disc planes)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    s = (idx @ aff[:3, :3].T + aff[:3, 3] - centre) @ d
    lv = np.where(cord.ravel() & (np.abs(s) < 12), np.floor((s + 12) / 8).astype(int) + 1, 0).reshape(shape)
    sd, a = to_rpi(cord, aff)
    cn, _ = to_rpi(canal, aff)
    lr, _ = to_rpi(lv, aff)
    vol = volume_per_level(sd, a, lr, cn).set_index("VertLevel")
    sl = per_level_table(compute_perslice(sd, a, lr, cn)).set_index("VertLevel")
    assert list(vol.index) == [1, 2, 3]
    mid = np.linspace(-4, 4, 4001)  # level 2 spans s in [-4, 4): the narrowing
    canal_truth = float(np.mean(np.pi * radius(mid) ** 2))
    sac_truth = canal_truth - np.pi * 16
    assert vol.loc[2, "length_mm"] == pytest.approx(8.0, abs=0.1)
    assert abs(vol.loc[2, "CSA"] / (np.pi * 16) - 1) < 0.02
    assert abs(vol.loc[2, "canal_area"] / canal_truth - 1) < 0.02
    assert abs(vol.loc[2, "SAC"] / sac_truth - 1) < 0.03
    slice_err = sl.loc[2, "SAC"] / sac_truth - 1
    assert slice_err > 0.05  # the documented bias of axial slices here (measured +27%)


def test_cli_morphometrics_volume(tmp_path):
    import nibabel as nib

    from cordbench.cli import main

    aff, cord, levels = _labelled_tube()
    for name, arr in [("seg", cord.astype(np.uint8)), ("lv", levels)]:
        nib.save(nib.Nifti1Image(arr, aff), str(tmp_path / f"{name}.nii.gz"))
    out = tmp_path / "vol.csv"
    assert (
        main(
            [
                "morphometrics",
                "--seg",
                str(tmp_path / "seg.nii.gz"),
                "--levels",
                str(tmp_path / "lv.nii.gz"),
                "--level-method",
                "volume",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    df = pd.read_csv(out)
    assert list(df["VertLevel"]) == [1, 2, 3] and {"CSA", "length_mm"} <= set(df.columns)
    assert abs(df.loc[1, "CSA"] / (np.pi * 16) - 1) < 0.03
    assert (
        main(["morphometrics", "--seg", str(tmp_path / "seg.nii.gz"), "--level-method", "volume", "-o", str(out)]) == 2
    )


def _rotated_rectangle(width: float, height: float, angle_deg: float, px: float = 0.1, n: int = 400):
    """A width × height (mm) rectangle rotated by ``angle_deg`` about its centre, on an n × n grid."""
    c = (np.arange(n) - (n - 1) / 2 + 0.31) * px
    x, y = np.meshgrid(c, c, indexing="ij")  # x: axis 0 (RL), y: axis 1 (AP)
    a = np.radians(angle_deg)
    u = x * np.cos(a) + y * np.sin(a)
    v = -x * np.sin(a) + y * np.cos(a)
    return ((np.abs(u) <= width / 2) & (np.abs(v) <= height / 2)).astype(float)


@pytest.mark.parametrize("angle", [0.0, 20.0, -35.0])
def test_rotated_profile_of_a_rotated_rectangle(angle):
    """The rotated profile measures a rectangle's true height at any rotation; the ellipse axis
    measures 4·√(h²/12) = 1.155 h; orientation is skimage's signed angle."""
    from skimage.measure import regionprops

    sl = _rotated_rectangle(12.0, 6.0, angle)
    frame = SliceFrame.from_affine(np.diag([0.1, 0.1, 1.0, 1.0]))
    shp = slice_shape(sl, frame, tangent=None)
    assert shp.diameter_AP == pytest.approx(6.0, rel=0.01)
    assert shp.length_anterior == pytest.approx(3.0, rel=0.02) and shp.length_posterior == pytest.approx(3.0, rel=0.02)
    assert shp.diameter_AP_ellipse == pytest.approx(4 * np.sqrt(36 / 12), rel=0.01)
    assert shp.diameter_RL == pytest.approx(4 * np.sqrt(144 / 12), rel=0.01)
    assert shp.orientation == pytest.approx(angle, abs=0.2)
    assert shp.orientation == pytest.approx(np.degrees(regionprops(sl.astype(np.uint8))[0].orientation), abs=1e-6)
    assert shp.area == pytest.approx(72.0, rel=0.01)


def test_profile_splits_anterior_and_posterior_at_the_centroid():
    """A 'T': a wide posterior bar and a narrow anterior stem; lengths measured on each side."""
    frame = SliceFrame.from_affine(np.diag([0.1, 0.1, 1.0, 1.0]))
    c = (np.arange(300) - 149.5) * 0.1
    x, y = np.meshgrid(c, c, indexing="ij")
    sl = (((np.abs(x) <= 6) & (y >= -4) & (y <= 0)) | ((np.abs(x) <= 2) & (y > 0) & (y <= 6))).astype(float)
    shp = slice_shape(sl, frame, tangent=None)
    pts = np.argwhere(sl > 0)
    yc = ((pts[:, 1] - 149.5) * 0.1).mean()  # centroid along AP
    assert shp.diameter_AP == pytest.approx(10.0, rel=0.01)  # |x| < 1.5 lies inside the stem
    assert shp.length_posterior == pytest.approx(yc + 4, rel=0.02)
    assert shp.length_anterior == pytest.approx(6 - yc, rel=0.02)


def test_soft_mask_is_partial_volume():
    """A disc rendered with fractional edge coverage: area = Σ values × pixel area (truth πr²);
    the 0.5 threshold of the same mask is the older, cruder estimate."""
    n, px, r = 64, 0.5, 4.3
    sub = 8
    c = (np.arange(n * sub) + 0.5) / sub * px - n * px / 2 + 0.137
    x, y = np.meshgrid(c, c, indexing="ij")
    cover = ((x**2 + y**2) <= r * r).reshape(n, sub, n, sub).mean(axis=(1, 3))
    vol = np.repeat(cover[:, :, None], 12, axis=2)
    aff = np.diag([px, px, 1.0, 1.0])
    ps = compute_perslice(vol, aff)
    assert (ps["mask_type"] == "soft").all()
    assert ps["area"].mean() == pytest.approx(np.pi * r * r, rel=0.002)
    hard = compute_perslice(vol >= 0.5, aff)
    assert (hard["mask_type"] == "binary").all()
    assert abs(hard["area"].mean() / (np.pi * r * r) - 1) > abs(ps["area"].mean() / (np.pi * r * r) - 1)
    assert ps["diameter_AP"].mean() == pytest.approx(
        np.mean(2 * np.sqrt(r * r - np.linspace(-1.5, 1.5, 1001) ** 2)), rel=0.01
    )


def test_one_pixel_section_is_measured_as_its_square():
    sl = np.zeros((9, 9))
    sl[4, 4] = 1.0
    shp = slice_shape(sl, SliceFrame.from_affine(np.diag([0.5, 0.5, 1.0, 1.0])), tangent=None)
    assert shp.area == pytest.approx(0.25)
    assert shp.diameter_AP_ellipse == pytest.approx(4 * 0.5 / np.sqrt(12)) == shp.diameter_RL
    assert shp.diameter_AP == pytest.approx(0.25 / 3.0)  # 0.25 mm² inside the 3 mm band
