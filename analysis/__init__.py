"""Quantitative analysis of cervical spinal cord MRI (seed 000, RQ2).

* :mod:`analysis.centerline` — RPI reorientation, slice frame, smooth centerline fit;
* :mod:`analysis.morphometrics` — per-slice / per-level CSA, diameters, shape, canal, SAC;
* :mod:`analysis.dti` — tensor fit (dipy), FA/MD/RD/AD maps and per-level means;
* :mod:`analysis.stats` — Pearson/Spearman with Fisher CIs, Fisher z-tests, Benjamini–Hochberg;
* :mod:`analysis.plots` — scatter plots and correlation heatmaps (matplotlib Agg);
* :mod:`analysis.dwi_levels` — vertebral levels on the DWI grid (given, DWI discs, or from the T2w);
* :mod:`analysis.study` — the ``cordbench analyze`` cohort pipeline (Ray tasks, HTML report).

Modules import their heavy dependencies lazily.
"""
