"""Synthetic phantom cohort with exactly known ground truth (cordbench's built-in data set).

``generate_cohort(out, n_subjects, seed, **options)`` writes a spine-generic-style BIDS tree
(T2w, T2*, DWI with the real spine-generic gradient scheme, labels under
``derivatives/labels`` with the real names) and the analytic truth under
``derivatives/phantom-truth``. Modules: :mod:`geometry` (centerline, grids), :mod:`anatomy`
(cross-sections, tissue, truth), :mod:`population` (subjects, planted correlation),
:mod:`contrast` (intensities, noise), :mod:`dwi` (tensors, scheme), :mod:`layout` (names,
sidecars), :mod:`subject` and :mod:`cohort` (writing).
"""

from data_modules.phantom.cohort import generate_cohort
from data_modules.phantom.options import PhantomOptions
from data_modules.phantom.subject import generate_subject

__all__ = ["generate_cohort", "generate_subject", "PhantomOptions"]
