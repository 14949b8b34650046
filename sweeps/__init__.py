"""Sweeps on Ray Tune: ablations and model benchmarks described by YAML files in ``configs/sweeps/``.

* :mod:`sweeps.config` — the sweep YAML schema, validation of every trial before any starts;
* :mod:`sweeps.trainable` — one trial = one ``cordbench fit`` run (plus per-epoch Tune reports);
* :mod:`sweeps.runner` — Ray start-up, Tuner build / run / resume, searcher save / restore;
* :mod:`sweeps.records` — the sweep folder's file names, a trial's records, the results.csv columns;
* :mod:`sweeps.results` — the sweep's ``results.csv`` (one row per trial);
* ``sweeps/run.py`` — entry point for ``ray submit`` / ``ray job submit``.

Heavy imports (torch, Ray, Lightning) stay inside functions so that importing this package
is cheap.
"""
