"""Precision statistics of one measurement (one area at one level) over a cohort's images.

Input: one row per image — ``subject``, ``session``, ``contrast``, ``site``, ``value`` (the area the
entry measured, mm²) and ``reference`` (the same area measured on the reference mask of that image;
NaN when the image has none). Definitions (docs/leaderboard.md, "Precision columns"):

* ``cov_contrast`` — per subject and session, 100·SD/mean (SD with ddof=1) of the values across its
  contrasts (≥ 2 contrasts); averaged over the subject's sessions, then over subjects (%);
* ``cov_session`` — the same across sessions within a contrast, averaged over contrasts, then subjects;
* ``icc_session`` — ICC(3,1) (Shrout & Fleiss 1979: two-way mixed, consistency, single measurement)
  of the subjects × sessions table of each contrast (subjects with every session), averaged over contrasts;
* ``cov_site`` — spine-generic's inter-site CoV (Cohen-Adad et al. 2021): each subject's mean over
  its images, each site's mean over its subjects, 100·SD/mean over the sites (≥ 2 sites);
* ``ba_bias`` / ``ba_loa_low`` / ``ba_loa_high`` — Bland & Altman (1986) over every image with a
  reference: mean of value − reference, and mean ± 1.96·SD (ddof=1).

CIs are percentile bootstraps over **subjects** (an image is never resampled alone: a subject's
images are not independent). A resample is a vector of multiplicities (multinomial counts) and every
statistic is computed with them as weights, which equals computing it on the duplicated subjects;
``cov_site`` resamples subjects within each site, so every resample has the study's sites. The means
of per-subject values (``cov_contrast``, ``cov_session``) use :func:`leaderboard.stats.bootstrap_ci`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.image_areas import POOLED
from leaderboard import stats

Z_LOA = 1.96
METRICS = ("cov_contrast", "cov_session", "icc_session", "cov_site", "ba_bias", "ba_loa_low", "ba_loa_high")
PER_SUBJECT = ("cov_contrast", "cov_session")  # means of per-subject values (paired Wilcoxon possible)


def _cov(values: np.ndarray) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size < 2 or v.mean() == 0:
        return math.nan
    return float(100.0 * v.std(ddof=1) / v.mean())


def subject_cov(images: pd.DataFrame, across: str) -> pd.Series:
    """Per-subject CoV (%) across ``contrast`` (within a session) or ``session`` (within a contrast)."""
    within = "session" if across == "contrast" else "contrast"
    df = images[np.isfinite(images["value"].to_numpy(float))]
    per = df.groupby(["subject", within], dropna=False)["value"].agg(lambda v: _cov(v.to_numpy(float)))
    return per.dropna().groupby(level="subject").mean()


def icc_3_1(table: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | float:
    """ICC(3,1) of a targets × raters table (rows: subjects, columns: sessions).

    ``(MS_R − MS_E) / (MS_R + (k − 1)·MS_E)`` with the two-way ANOVA mean squares. ``weights``
    (``(B, n)`` row multiplicities) gives one ICC per row of weights, as if each subject's row were
    repeated that many times. NaN with fewer than 2 subjects or sessions, or no variance.
    """
    x = np.asarray(table, float)
    n, k = x.shape
    single = weights is None
    w = np.ones((1, n)) if single else np.asarray(weights, float)
    if n < 2 or k < 2:
        out = np.full(w.shape[0], np.nan)
        return float(out[0]) if single else out
    N = w.sum(axis=1)  # (B,)
    rows = x.mean(axis=1)  # (n,)
    grand = (w @ rows) / N  # (B,)
    cols = (w @ x) / N[:, None]  # (B, k)
    ss_rows = k * (w * (rows[None, :] - grand[:, None]) ** 2).sum(axis=1)
    ss_cols = N * ((cols - grand[:, None]) ** 2).sum(axis=1)
    ss_tot = (w * ((x[None, :, :] - grand[:, None, None]) ** 2).sum(axis=2)).sum(axis=1)
    ss_err = ss_tot - ss_rows - ss_cols
    with np.errstate(divide="ignore", invalid="ignore"):
        ms_r = ss_rows / (N - 1)
        ms_e = ss_err / ((N - 1) * (k - 1))
        icc = (ms_r - ms_e) / (ms_r + (k - 1) * ms_e)
    icc = np.where((N >= 2) & np.isfinite(icc), icc, np.nan)
    return float(icc[0]) if single else icc


def _session_tables(images: pd.DataFrame) -> list[pd.DataFrame]:
    """Per contrast: the subjects × sessions table of the subjects with every session (≥ 2 sessions)."""
    out = []
    for _, g in images.groupby("contrast", dropna=False):
        t = g.pivot_table(index="subject", columns="session", values="value", aggfunc="mean").dropna()
        if t.shape[1] >= 2 and t.shape[0] >= 2:
            out.append(t)
    return out


@dataclass
class Estimate:
    """A statistic with its bootstrap CI and the bootstrap replicates (for paired differences)."""

    value: float
    ci_low: float
    ci_high: float
    boot: np.ndarray  # (n_boot,) replicates on the subjects' weights; NaN where undefined
    n: int  # subjects that entered it


NAN_ESTIMATE = Estimate(math.nan, math.nan, math.nan, np.full(0, np.nan), 0)


def subject_weights(subjects: list[str], n_boot: int, seed: int, strata: pd.Series | None = None) -> pd.DataFrame:
    """Bootstrap multiplicities, ``n_boot`` × subjects: each row resamples the subjects with replacement
    (within each stratum when ``strata`` maps subject → stratum)."""
    rng = np.random.default_rng(seed)
    w = np.zeros((n_boot, len(subjects)))
    groups = [list(range(len(subjects)))]
    if strata is not None:
        lab = strata.reindex(subjects).astype(str).to_numpy()
        groups = [list(np.flatnonzero(lab == s)) for s in sorted(set(lab))]
    for idx in groups:
        if idx:
            w[:, idx] = rng.multinomial(len(idx), [1.0 / len(idx)] * len(idx), size=n_boot)
    return pd.DataFrame(w, columns=subjects)


def _ci(point: float, boot: np.ndarray, n: int, level: float = 0.95) -> Estimate:
    b = boot[np.isfinite(boot)]
    if not math.isfinite(point) or not b.size:
        return Estimate(point, math.nan, math.nan, boot, n)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(b, [a, 1.0 - a])
    return Estimate(point, float(lo), float(hi), boot, n)


def icc_session(images: pd.DataFrame, weights: pd.DataFrame) -> Estimate:
    """Mean over contrasts of ICC(3,1) between sessions, with its subject bootstrap."""
    tables = _session_tables(images)
    if not tables:
        return NAN_ESTIMATE
    points = [icc_3_1(t.to_numpy(float)) for t in tables]
    boots = [icc_3_1(t.to_numpy(float), weights[list(t.index)].to_numpy(float)) for t in tables]
    n = len(set().union(*(t.index for t in tables)))
    return _ci(float(np.mean(points)), np.mean(np.vstack(boots), axis=0), n)


def cov_site(images: pd.DataFrame, sites: pd.Series, weights: pd.DataFrame) -> Estimate:
    """Inter-site CoV (%) of the per-site means of the subjects' mean values; ``weights`` stratified by site."""
    per = images[np.isfinite(images["value"].to_numpy(float))].groupby("subject")["value"].mean()
    site = sites.reindex(per.index)
    ok = site.notna()
    per, site = per[ok], site[ok].astype(str)
    names = sorted(set(site))
    if len(names) < 2:
        return NAN_ESTIMATE
    onehot = np.stack([(site == s).to_numpy(float) for s in names])  # (S, n)
    vals = per.to_numpy(float)

    def stat(w: np.ndarray) -> np.ndarray:  # (B, n) -> (B,)
        with np.errstate(divide="ignore", invalid="ignore"):
            means = (w * vals) @ onehot.T / (w @ onehot.T)  # (B, S)
            return 100.0 * means.std(axis=1, ddof=1) / means.mean(axis=1)

    point = float(stat(np.ones((1, vals.size)))[0])
    return _ci(point, stat(weights[list(per.index)].to_numpy(float)), int(vals.size))


def bland_altman(images: pd.DataFrame, weights: pd.DataFrame) -> dict[str, Estimate]:
    """``ba_bias``, ``ba_loa_low``, ``ba_loa_high`` over the images with a reference (subject bootstrap)."""
    d = images.assign(d=images["value"] - images["reference"])
    d = d[np.isfinite(d["d"].to_numpy(float))]
    if d.empty:
        return {k: NAN_ESTIMATE for k in ("ba_bias", "ba_loa_low", "ba_loa_high")}
    g = d.groupby("subject")["d"]
    cnt, s1, s2 = g.count(), g.sum(), g.apply(lambda v: float((v**2).sum()))
    subs = list(cnt.index)

    def stat(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = w @ cnt.to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (w @ s1.to_numpy(float)) / n
            var = ((w @ s2.to_numpy(float)) - n * mean**2) / (n - 1)
            sd = np.sqrt(np.clip(var, 0.0, None))
        return mean, mean - Z_LOA * sd, mean + Z_LOA * sd

    point = stat(np.ones((1, len(subs))))
    boot = stat(weights[subs].to_numpy(float))
    return {k: _ci(float(p[0]), b, len(subs)) for k, p, b in zip(("ba_bias", "ba_loa_low", "ba_loa_high"), point, boot)}


def per_subject_estimate(values: pd.Series, n_boot: int, seed: int) -> Estimate:
    """Mean of per-subject values with :func:`leaderboard.stats.bootstrap_ci`."""
    v = values.dropna()
    if v.empty:
        return NAN_ESTIMATE
    lo, hi = stats.bootstrap_ci(v.to_numpy(float), n_boot=n_boot, seed=seed)
    return Estimate(float(v.mean()), lo, hi, np.full(0, np.nan), int(v.size))


def precision(images: pd.DataFrame, sites: pd.Series, n_boot: int, seed: int) -> dict[str, Estimate]:
    """Every metric of :data:`METRICS` for one entry and one measurement (see the module docstring)."""
    subjects = sorted(images["subject"].unique())
    w = subject_weights(subjects, n_boot, seed)
    out = {
        "cov_contrast": per_subject_estimate(subject_cov(images, "contrast"), n_boot, seed),
        "cov_session": per_subject_estimate(subject_cov(images, "session"), n_boot, seed),
        "icc_session": icc_session(images, w),
        "cov_site": cov_site(images, sites, subject_weights(subjects, n_boot, seed, strata=sites)),
    }
    out.update(bland_altman(images, w))
    return out


def measurement(images: pd.DataFrame, key: str, kind: str = "SC") -> pd.DataFrame:
    """The ``subject, session, contrast, value, reference`` rows of one area (``key``: C2…C5, C2-C5)."""
    sub = images[images["kind"] == kind]
    return pd.DataFrame(
        {
            "subject": sub["subject"].astype(str),
            "session": sub["session"].astype(str),
            "contrast": sub["contrast"].astype(str),
            "value": sub[key].astype(float),
            "reference": sub[f"ref_{key}"].astype(float),
        }
    )


def column_name(metric: str, key: str, kind: str = "SC") -> str:
    """``cov_contrast`` (pooled cord area), ``cov_contrast_C3`` (a level), ``gm_`` prefix for GM area."""
    base = metric if key == POOLED else f"{metric}_{key}"
    return base if kind == "SC" else f"gm_{base}"
