"""Statistical leaderboard of a sweep: bootstrap CIs, paired Wilcoxon vs the best (Holm), ablations.

``render_leaderboard(sweep_dir)`` reads the sweep's own files (``results.csv`` and each trial's
``test_metrics.csv``, not wandb), writes ``leaderboard.{md,csv,html,png}`` and
``ablation_<knob>.png`` (+ ``morphometrics.csv``, the per-level CSA errors, when the morphometric
columns of :mod:`leaderboard.morphometrics` are on) and logs them to a
``job_type=leaderboard`` wandb run in the sweep's group.
See ``docs/leaderboard.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LeaderboardFiles", "render_leaderboard"]


@dataclass
class LeaderboardFiles:
    """Paths of the written reports (and the wandb run folder, if one was logged)."""

    md: Path
    csv: Path
    html: Path
    png: Path
    ablation: dict[str, Path] = field(default_factory=dict)
    wandb_run: Path | None = None
    morphometrics: Path | None = None  # per-level CSA error table (when the morphometric columns are on)
    precision: Path | None = None  # precision.png (when the precision columns are on)
    by_contrast: dict[str, Path] = field(default_factory=dict)  # contrast -> its leaderboard.md (--by-contrast)

    @property
    def markdown(self) -> str:
        """Content of ``leaderboard.md``."""
        return self.md.read_text()


def render_leaderboard(
    sweep_dir: str | Path,
    metric: str = "dice",
    task: str | None = None,
    cls: str | None = None,
    by: str = "model",
    out: str | Path | None = None,
    n_boot: int = 10000,
    seed: int = 0,
    wandb: bool = True,
    cost: bool = True,
    alpha: float = 0.05,
    delta: float = 0.01,
    morphometrics: bool | None = None,
    refresh_morphometrics: bool = False,
    log: Callable[[str], None] | None = None,
    upload: bool = False,
    real: str | Path | None = None,
    ensembles: bool = False,
    soft_csa: bool = False,
    precision: bool | None = None,
    precision_data: str | Path | None = None,
    externals: dict[str, Path] | None = None,
    by_contrast: bool = False,
) -> LeaderboardFiles:
    """Build the leaderboard of ``sweep_dir`` and write its reports to ``out`` (default ``<sweep>/leaderboard``).

    ``sweep_dir`` may be a URI (``s3://bucket/sweeps/NAME``): the sweep is read from the bucket
    (:mod:`leaderboard.remote`), the reports go to ``out`` (default
    ``outputs/leaderboards/NAME``) and, with ``upload``, also to ``<sweep_dir>/leaderboard/``.
    ``real``: a folder of real labelled scans; adds the real-data columns (:mod:`leaderboard.real`).
    ``precision``, ``precision_data``, ``externals``: see :func:`leaderboard.table.build_leaderboard`.
    ``by_contrast``: also one board per image contrast in ``<out>/contrast-<C>/`` (:mod:`leaderboard.by_contrast`).
    """
    import contextlib

    from core.outputs import check_output_dir
    from leaderboard.table import build_leaderboard

    uri = str(sweep_dir) if "://" in str(sweep_dir) else None
    if upload and uri is None:
        from core.errors import ConfigError

        raise ConfigError(
            "--upload is for a sweep on URI storage (s3://…); a local sweep's reports are already beside it", sweep_dir
        )
    with contextlib.ExitStack() as stack:
        if uri is not None:  # read from the bucket into a temporary folder (complete trials only)
            from leaderboard import remote

            out = Path(out) if out is not None else remote.default_out(uri)
            check_output_dir(out, what="leaderboard folder (--out)")
            sweep_dir = stack.enter_context(remote.fetched(uri))
        elif out is None:  # the default beside the sweep: checked before any work, like --out
            from core.paths import require_dir

            out = require_dir(sweep_dir, "sweep folder") / "leaderboard"
            check_output_dir(out, what="leaderboard folder (default SWEEP_DIR/leaderboard; give --out elsewhere)")
        files = _render(
            out,
            build_leaderboard(
                sweep_dir,
                metric=metric,
                task=task,
                cls=cls,
                by=by,
                n_boot=n_boot,
                seed=seed,
                alpha=alpha,
                delta=delta,
                cost=cost,
                morphometrics=morphometrics,
                refresh_morphometrics=refresh_morphometrics,
                log=log,
                real=real,
                ensembles=ensembles,
                soft_csa=soft_csa,
                precision=precision,
                precision_data=precision_data,
                externals=externals,
            ),
            wandb,
        )
        if by_contrast:
            from leaderboard.by_contrast import build_by_contrast

            opts = {"metric": metric, "task": task, "cls": cls, "by": by, "n_boot": n_boot, "seed": seed}
            boards = build_by_contrast(sweep_dir, files.md.parent, **opts, alpha=alpha, delta=delta)
            files.by_contrast = {c: paths["md"] for c, paths in boards.items()}
    if uri is not None and upload:
        remote.publish(files.md.parent, uri)
    return files


def _render(out: str | Path | None, lb, wandb: bool) -> LeaderboardFiles:
    """Write the reports of ``lb`` (and log them to wandb)."""
    from leaderboard.provenance import refresh_best_cards
    from leaderboard.report import write_reports

    out_dir = Path(out) if out is not None else lb.sweep.root / "leaderboard"
    paths = write_reports(lb, out_dir)
    refresh_best_cards(lb)
    files = LeaderboardFiles(
        md=paths["md"],
        csv=paths["csv"],
        html=paths["html"],
        png=paths["png"],
        ablation=dict(paths["ablation"]),
        morphometrics=paths.get("morphometrics"),
        precision=paths.get("precision"),
    )
    if wandb:
        files.wandb_run = _log_to_wandb(lb, out_dir, files)
    return files


def _log_to_wandb(lb, out_dir: Path, files: LeaderboardFiles) -> Path | None:
    """Log the table and plots to a leaderboard run in the group the trials used."""
    from runs.tracking import log_leaderboard, wandb_defaults_from_trials

    configs = []
    for _, row in lb.sweep.results.iterrows():
        run = lb.sweep.run_folder(row)
        if run.config.exists():
            try:
                configs.append(run.read_config())
                break
            except Exception:
                continue
    wb = wandb_defaults_from_trials(configs, lb.sweep.name)
    images = {"leaderboard": files.png, **{f"ablation_{k}": p for k, p in files.ablation.items()}}
    from leaderboard.report import csv_frame

    meta = {k: v for k, v in lb.meta.items() if not isinstance(v, dict)}
    return log_leaderboard(
        out_dir,
        csv_frame(lb),
        images,
        meta,
        project=wb["project"],
        entity=wb["entity"],
        group=wb["group"],
        mode=wb["mode"],
    )
