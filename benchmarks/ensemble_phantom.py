"""Ensembles and soft CSA on the phantom: a tiny sweep of 2 models x 2 seeds, its leaderboard with
``--ensembles --soft-csa``, and the CSA error of every entry against the phantom's exact truth.

* cohort: ``cordbench phantom`` defaults (T2w 0.8 mm isotropic), ``--subjects`` subjects (seed 0), split
  seed 0 with 40 % held out; every trial is a real ``runs.runner.fit`` (tiny presets, 2D, 0.8 × 0.8 × 2 mm
  training grid, ``--epochs`` short CPU epochs) laid out as ``cordbench sweep`` lays out a sweep;
* leaderboard (``leaderboard.table.build_leaderboard``, ``ensembles=True, soft_csa=True``): Dice with the
  paired statistics, CSA error against the manual masks (thresholded and soft);
* truth: per held-out subject and level C1..C7, ``100·|CSA − truth|/truth`` with the truth of
  ``derivatives/phantom-truth/truth_levels.tsv`` (``csa_mm2``, perpendicular CSA, exact), for the
  thresholded mask and the soft probability of each single trial (mean over the two seeds) and of the
  ensemble; the same subjects for all (every trial holds out the same split).

Run: ``python benchmarks/ensemble_phantom.py --out outputs/ensemble-phantom`` (prints Markdown tables).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

MODELS = (("unet", {}), ("sattisunet", {}))
SEEDS = (0, 1)


def trial_config(phantom: Path, out: Path, model: str, seed: int, epochs: int, subjects: int):
    from runs.config import load_config

    extra = {
        "name": f"ens-{model}-s{seed}",
        "seed_everything": seed,
        "output_dir": str(out),
        "model": {"name": model, "preset": "tiny"},
        "data": {
            "name": "phantom",
            "root": str(phantom),
            "task": "sc",
            "spacing": [0.8, 0.8, 2.0],
            "crop": [64, 64],
            "patch_size": [32, 32],
            "batch_size": 8,
            "phantom": {"subjects": subjects, "seed": 0},
            "split": {"val_fraction": 0.1, "test_fraction": 0.4, "seed": 0},
        },
        "trainer": {
            "max_epochs": epochs,
            "accelerator": "cpu",
            "devices": 1,
            "limit_train_batches": 12,
            "enable_progress_bar": False,
        },
        "logger": {"wandb": {"enabled": False}},
    }
    return load_config([], [], extra)


def build_sweep(root: Path, epochs: int, subjects: int) -> Path:
    from data_modules.phantom import generate_cohort
    from runs.run_folder import TEST_METRICS
    from runs.runner import fit
    from sweeps.records import RESULTS_FILE, TRIALS_DIR

    phantom = root / "phantom"
    if not (phantom / "participants.tsv").exists():
        generate_cohort(phantom, n_subjects=subjects, seed=0, snr=30.0, dwi=False)
    rows = []
    for model, options in MODELS:
        for seed in SEEDS:
            tid = f"{model}-s{seed}"
            out = root / "sweep" / TRIALS_DIR / tid
            if not (out / TEST_METRICS).exists():
                fit(trial_config(phantom, out, model, seed, epochs, subjects))
            rows.append(
                {
                    "trial_id": tid,
                    "status": "TERMINATED",
                    "model": model,
                    "preset": "tiny",
                    "seed": seed,
                    "data": "phantom",
                    "task": "sc",
                    "run_dir": f"{TRIALS_DIR}/{tid}",
                    **options,
                }
            )
    pd.DataFrame(rows).to_csv(root / "sweep" / RESULTS_FILE, index=False)
    return root / "sweep"


def truth_errors(lb, phantom: Path) -> pd.DataFrame:
    """Per entry: mean over held-out subjects of the mean over levels of |CSA - truth| / truth (%),
    thresholded and soft."""
    truth = pd.read_csv(phantom / "derivatives" / "phantom-truth" / "truth_levels.tsv", sep="\t")
    truth = truth.rename(columns={"participant_id": "subject"})[["subject", "VertLevel", "csa_mm2"]]
    frames: dict[tuple[str, str], list[pd.DataFrame]] = {}
    from runs.run_folder import MORPHOMETRICS

    for _, row in lb.sweep.results.iterrows():  # thresholded single trials: the leaderboard's cache
        cache = lb.sweep.trial_dir(row) / MORPHOMETRICS
        frames.setdefault((str(row["model"]), "thresholded"), []).append(pd.read_csv(cache, dtype={"subject": str}))
    for entry, fs in lb.ensembles.morpho.items():
        frames.setdefault((entry, "thresholded"), []).extend(fs)
    for entry, fs in lb.ensembles.soft.items():
        frames.setdefault((entry, "soft"), []).extend(fs)
    rows = []
    for (entry, kind), fs in frames.items():
        per_trial = []
        for f in fs:
            f = f[f["VertLevel"].notna()].merge(truth, on=["subject", "VertLevel"])
            f = f.assign(err=100 * (f["CSA_model"] - f["csa_mm2"]).abs() / f["csa_mm2"])
            f = f.assign(manual=100 * (f["CSA_manual"] - f["csa_mm2"]).abs() / f["csa_mm2"])
            per_trial.append(f.groupby("subject")[["err", "manual"]].mean())
        subj = pd.concat(per_trial).groupby(level=0).mean()
        rows.append({"entry": entry, "kind": kind, "csa_abs_err_vs_truth_pct": subj["err"].mean(), "n": len(subj)})
        rows.append({"entry": "manual masks", "kind": "label", "csa_abs_err_vs_truth_pct": subj["manual"].mean()})
    out = pd.DataFrame(rows).drop_duplicates(subset=["entry", "kind"])
    return out.pivot_table(index="entry", columns="kind", values="csa_abs_err_vs_truth_pct")


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A Markdown table of ``df`` (index kept when named)."""
    df = df.reset_index() if df.index.name or any(df.index.names) else df

    def fmt(v) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    from leaderboard.table import build_leaderboard

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="outputs/ensemble-phantom")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--subjects", type=int, default=10)
    args = ap.parse_args()
    root = Path(args.out)
    sweep = build_sweep(root, args.epochs, args.subjects)
    lb = build_leaderboard(sweep, n_boot=2000, cost=False, ensembles=True, soft_csa=True, morphometrics=True, log=print)
    cols = ["entry", "n_trials", "n_subjects", "mean", "ci_low", "ci_high", "p_wilcoxon", "p_holm", "label"]
    cols += ["csa_mae_pct", "csa_soft_mae_pct", "csa_bias_pct", "csa_soft_bias_pct"]
    print("\nLeaderboard (Dice; CSA error against the manual masks, %):")
    print(markdown(lb.table[[c for c in cols if c in lb.table]]))
    seeds = lb.long[lb.long["trial_id"].isin(lb.sweep.results["trial_id"])]
    print("\nDice per seed (mean over the held-out subjects):")
    print(markdown(seeds.groupby(["model", "seed"])["value"].mean().to_frame("dice")))
    print("\nCSA |error| against the phantom's exact truth (%; single seeds: mean of the two):")
    print(markdown(truth_errors(lb, root / "phantom"), 2))


if __name__ == "__main__":
    main()
