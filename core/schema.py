"""The typed config schema: every key of a run config and of a sweep file, declared once.

Why over ~450 lines: it is the declaration of ~150 keys (each with its type, default, range, choices and
help) plus the small index that every other layer derives its defaults, checks and ``--help`` from;
split, it would again have several owners.

Each section is a stdlib dataclass; each key is a field whose annotation is its type, whose
default is its default, and whose metadata (set by :func:`key`) holds its one-line help, its
:class:`~core.ranges.Range`, its choices, and for a few keys:

* ``fallback`` — a training-recipe key (``model.lr``, ``trainer.max_epochs``, …): its default is
  ``null`` ("the model preset's recipe"), filled by :mod:`runs.recipes` from the preset's
  ``RECIPES`` or else from this value; ``recipe`` is the key's name inside a preset's recipe;
* ``hparam`` — the :class:`~lightning_modules.module.SegmentationModule` argument the key feeds
  (:func:`hparams`; ``runs.runner.build_module`` adds what the data module knows);
* ``free_form`` — a mapping whose keys are not declared here (``model.options``: network knobs,
  checked against the model registry; a sweep's ``config``/``space``/``stop``/``source``).

Choices owned by a registry of another layer (model names, schedulers, split methods, …) are
declared as :class:`Registry` (where the list lives) and checked by :mod:`runs.config`, which
may import it. Everything else derives from here: ``runs.config.DEFAULTS`` and ``RANGES``,
``runs.recipes.FALLBACK``, ``lightning_modules.presets.RECIPE_KEYS`` and ``PRESET_NAMES``, the
defaults of ``SegmentationModule``, ``sweeps.config.SWEEP_DEFAULTS``, the domain-randomisation
options of the phantom, and the key table of ``cordbench fit --help``. :func:`from_mapping` is the
one dataclass-from-dict with an unknown-key check.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

from core.errors import ConfigError
from core.ranges import SEED_MAX, Range
from core.tasks import TASK_NAMES


@dataclass(frozen=True)
class Registry:
    """Choices that live in a registry of another layer: ``module.attribute`` (checked by :mod:`runs.config`).

    ``listing`` is what ``--help`` shows instead of importing the registry (heavy imports: torch, torchio).
    """

    path: str
    listing: str = ""


def key(
    default: Any,
    help: str,
    *,
    range: Range | None = None,
    choices: tuple[Any, ...] | Registry | None = None,
    fallback: Any = None,
    recipe: str | None = None,
    hparam: str | None = None,
    free_form: bool = False,
) -> Any:
    """A schema field: ``default`` plus its help, range, choices and the roles described in the module docstring."""
    meta = {
        "help": help,
        "range": range,
        "choices": choices,
        "fallback": fallback,
        "recipe": recipe,
        "hparam": hparam,
        "free_form": free_form,
    }
    if isinstance(default, (list, dict)):
        return field(default_factory=functools.partial(copy.deepcopy, default), metadata=meta)
    return field(default=default, metadata=meta)


def section(cls: type, help: str) -> Any:
    """A nested section (a dataclass of keys)."""
    return field(default_factory=cls, metadata={"help": help, "section": True})


_PROB = Range(0, 1)
_FRACTION = Range(0, 1, hi_open=True)
_SEED = Range(0, SEED_MAX, integer=True)


# --------------------------------------------------------------------------------------- run config
@dataclass
class ModelConfig:
    name: str = key(
        "unet",
        "network to train",
        choices=Registry("lightning_modules.registry.list_models", "any registered network (cordbench models)"),
        hparam="network",
    )
    preset: str = key(
        "small",
        "network size: tiny (tests), small (laptop), paper (GPU, the paper's size)",
        choices=("tiny", "small", "paper"),
        hparam="preset",
    )
    options: dict = key({}, "network knobs overriding the preset (cordbench models lists them)", free_form=True)
    lr: float | None = key(
        None,
        "AdamW learning rate",
        range=Range(0, None, lo_open=True),  # a huge lr is legal
        fallback=1e-3,
        recipe="lr",
        hparam="lr",
    )  # (tests use 1e30 to make a loss diverge)
    weight_decay: float | None = key(
        None, "AdamW weight decay", range=Range(0, 10), fallback=1e-4, recipe="weight_decay", hparam="weight_decay"
    )
    scheduler: str | None = key(
        None,
        "learning-rate schedule",
        choices=Registry("lightning_modules.schedule.SCHEDULERS"),
        fallback="cosine",
        recipe="scheduler",
        hparam="scheduler",
    )
    warmup_epochs: int | None = key(
        None,
        "epochs of linear learning-rate warm-up",
        range=Range(0, 1_000_000, integer=True),
        fallback=0,
        recipe="warmup_epochs",
        hparam="warmup_epochs",
    )
    dice_weight: float = key(1.0, "weight of the Dice term of the loss", range=Range(0, 1e6), hparam="dice_weight")
    ce_weight: float = key(1.0, "weight of the cross-entropy term of the loss", range=Range(0, 1e6), hparam="ce_weight")
    dropout: float | None = key(
        None, "shortcut: passed to networks that have a dropout knob", range=Range(0, 1, hi_open=True)
    )
    postprocess: str | None = key(
        None,
        "post-processing of label maps; null: the task's default (sc, canal: largest_component; gm, levels: none)",
        choices=Registry("evaluation.postprocess.POSTPROCESS"),
    )


@dataclass
class SplitConfig:
    method: str = key(
        "random", "how subjects are split into train/val/test", choices=Registry("data_modules.splits.SPLIT_METHODS")
    )
    val_fraction: float = key(0.2, "share of subjects for validation", range=_FRACTION)
    test_fraction: float = key(0.2, "share of subjects for test", range=_FRACTION)
    folds: int = key(5, "kfold: number of folds", range=Range(2, 1000, integer=True))
    fold: int = key(0, "kfold: the test fold", range=Range(0, 999, integer=True))
    file: str | None = key(None, "file: JSON of subject lists per split")
    seed: int = key(0, "seed of the split", range=_SEED)


@dataclass
class AugmentConfig:
    strength: float = key(1.0, "scales every augmentation probability; 0 disables", range=Range(0, 5))
    affine: float = key(0.3, "probability of a random affine transform", range=_PROB)
    elastic: float = key(0.0, "probability of an elastic deformation", range=_PROB)
    bias_field: float = key(0.3, "probability of a bias field", range=_PROB)
    noise: float = key(0.3, "probability of added noise", range=_PROB)
    gamma: float = key(0.3, "probability of a gamma change", range=_PROB)


@dataclass(frozen=True)
class RandomiseRanges:
    """Ranges of the phantom's per-image draws (docs/phantom.md; ``data_modules.phantom.randomise_options``)."""

    intensity_jitter: float = key(
        0.35, "log-SD of each tissue's value around its contrast's template", range=Range(0, 2)
    )
    free_contrast: float = key(0.2, "share of images with fully random tissue values (SynthSeg)", range=_PROB)
    contrast_mix: float = key(0.5, "share of images drawn from the other anatomical contrast", range=_PROB)
    templates: list | None = key(
        None,
        "templates a contrast_mix draw picks from (T2w, T2star, T1w, MTon, MToff, EPI, DWI; EPI/DWI add "
        "low resolution, distortion and drop-out); null: the other of T2w/T2*",
    )
    blend_prob: float = key(
        0.0, "share of images whose tissue values blend two templates (log-linear, weight U(0, 1))", range=_PROB
    )
    inplane_min: float = key(0.4, "in-plane voxel size (mm), uniform in [min, max]", range=Range(0.2, 4))
    inplane_max: float = key(1.2, "in-plane voxel size (mm), upper end", range=Range(0.2, 4))
    thickness_min: float = key(0.5, "slice thickness (mm), uniform in [min, max]", range=Range(0.2, 12))
    thickness_max: float = key(8.0, "slice thickness (mm), upper end", range=Range(0.2, 12))
    axial_prob: float = key(0.5, "share of axial acquisitions (thick axis S-I); else sagittal", range=_PROB)
    fov_min: float = key(
        24.0, "in-plane field of view (mm) around the cord, uniform in [min, max]", range=Range(20, 200)
    )
    fov_max: float = key(80.0, "in-plane field of view (mm), upper end", range=Range(20, 200))
    offset_max: float = key(0.15, "FOV centre offset from the cord, share of the FOV", range=Range(0, 0.4))
    wide_fov_prob: float = key(
        0.0,
        "share of images with a whole-neck field of view (axial: fov_axial, sagittal: fov_sagittal along A-P) "
        "and the cord anywhere in it (wide_offset_max); 0 keeps the draws of the narrow field alone",
        range=_PROB,
    )
    fov_axial_min: float = key(
        100.0, "whole-neck axial field of view (mm), uniform in [min, max]", range=Range(20, 600)
    )
    fov_axial_max: float = key(200.0, "whole-neck axial field of view (mm), upper end", range=Range(20, 600))
    fov_sagittal_min: float = key(
        200.0, "whole-neck sagittal A-P field of view (mm), uniform in [min, max]", range=Range(20, 600)
    )
    fov_sagittal_max: float = key(400.0, "whole-neck sagittal A-P field of view (mm), upper end", range=Range(20, 600))
    wide_offset_max: float = key(
        0.35, "whole-neck field: FOV centre offset from the cord, share of the FOV", range=Range(0, 0.45)
    )
    oblique_max: float = key(15.0, "grid rotation (deg) about a random axis", range=Range(0, 45))
    snr_min: float = key(8.0, "Rician SNR on the cord's white matter, uniform in [min, max]", range=Range(1, 1000))
    snr_max: float = key(60.0, "Rician SNR, upper end", range=Range(1, 1000))
    bias_max: float = key(0.5, "log-amplitude of the bias field, uniform in [0, max]", range=Range(0, 1))
    texture: float = key(0.3, "amplitude of the smooth texture of soft tissue and muscle", range=Range(0, 1))
    ghosting_prob: float = key(0.2, "probability of ghosting", range=_PROB)
    motion_prob: float = key(0.15, "probability of motion artefacts", range=_PROB)
    gibbs_prob: float = key(0.3, "probability of Gibbs ringing", range=_PROB)
    canal_shift_max: float = key(0.6, "cord off the canal's centre: U(±max)·(B − b) along A-P", range=Range(0, 0.8))
    max_voxels: int = key(
        2_000_000,
        "coarser grid (same shape ratio) above this many voxels",
        range=Range(100_000, 50_000_000, integer=True),
    )


@dataclass(frozen=True)
class _Switch:
    enabled: bool = key(False, "domain randomisation of T2w/T2* (docs/phantom.md); off keeps the cohort byte-identical")


@dataclass(frozen=True)
class RandomiseConfig(RandomiseRanges, _Switch):
    """The ``data.phantom.randomise`` block: the switch, then the ranges."""


@dataclass
class PhantomConfig:
    subjects: int = key(20, "subjects of the generated phantom cohort", range=Range(1, 10_000, integer=True))
    seed: int = key(0, "seed of the phantom cohort", range=_SEED)
    snr: float = key(
        30.0, "Rician noise: white-matter signal / sigma; 0 or inf: no noise", range=Range(0, None, allow_inf=True)
    )
    dwi: bool = key(False, "also write DWI (4D + bval/bvec)")
    contrasts: list | None = key(
        None, "anatomical images to write, of T2w, T2star, T1w, MTon, MToff (docs/phantom.md); null: T2w and T2star"
    )
    randomise: RandomiseConfig = section(RandomiseConfig, "domain randomisation (docs/phantom.md)")


@dataclass
class DataConfig:
    name: str = key(
        "phantom",
        "data set",
        choices=Registry("data_modules.registry.DATAMODULES", "phantom, spine_generic or gmchallenge"),
    )
    root: str | None = key(None, "data set folder; phantom: generated when missing")
    task: str = key("sc", "segmentation task", choices=TASK_NAMES, hparam=None)
    contrast: str | list | None = key(
        None,
        "image contrast (a BIDS chain: T2w, flip-1_mt-on_MTS, …); a list of contrasts or 'all' trains one model on "
        "every listed contrast a subject has (docs/data.md); null: the task's (sc/canal/levels: T2w, gm: T2star)",
    )
    spatial_dims: int = key(2, "2: axial slices, 3: patches", choices=(2, 3))
    spacing: list | None = key(
        None,
        "target spacing [x, y, z] (mm); null keeps native spacing, a null entry "
        "keeps that axis (e.g. [0.25, 0.25, null])",
        range=Range(0, 100, lo_open=True),
        hparam="spacing",
    )
    patch_size: list = key(
        [64, 64],
        "training patch: in-plane [x, y] (2D) or [x, y, z] (3D)",
        range=Range(1, 4096, integer=True),
        hparam="patch_size",
    )
    crop: list | None = key(
        None,
        "[x, y] in-plane crop/pad (voxels): centred on the label for training, on "
        "the FOV for val/test/predict; null keeps the FOV",
        range=Range(1, 4096, integer=True),
    )
    train_crop: str | None = key(
        None,
        "training crop with data.crop: label (around the cord) | label-wide (twice data.crop around it: "
        "background patches for whole-image inference) | centre; null: the preset's, else label",
        choices=("label", "label-wide", "centre"),
    )
    inference: str | None = key(
        None,
        "label-free rule of val/test/predict with data.crop: centre (FOV-centred crop, Perone) | sliding "
        "(sliding window over the whole image) | localise (find the cord, then crop around it slice by "
        "slice); null: the preset's (perone: centre), else localise",
        choices=("centre", "sliding", "localise"),
    )
    inference_overlap: float = key(0.25, "sliding window overlap (sliding, localise)", range=Range(0, 0.95))
    inference_blend: str = key(
        "gaussian", "sliding window weighting (sliding, localise)", choices=("gaussian", "constant")
    )
    batch_size: int = key(16, "training batch size", range=Range(1, 65536, integer=True))
    num_workers: int = key(0, "data-loader worker processes", range=Range(0, 256, integer=True))
    samples_per_volume: int = key(24, "torchio queue: patches drawn per volume", range=Range(1, 100_000, integer=True))
    queue_length: int = key(240, "torchio queue: patches held", range=Range(1, 10_000_000, integer=True))
    foreground_probability: float = key(0.8, "share of training patches centred on the label", range=_PROB)
    pipeline: str | None = key(
        None,
        "training input: fast (2D: cached slices, batch augmentation on the "
        "training device) | torchio (per-volume queue); null: fast for 2D, torchio "
        "for 3D",
        choices=("fast", "torchio"),
    )
    cache: bool = key(True, "cache preprocessed subjects on disk (keyed by file contents + settings)")
    cache_dir: str | None = key(
        None, "preprocessed-subject cache; null: $CORDBENCH_CACHE or ~/.cache/cordbench/preprocessed"
    )
    split: SplitConfig = section(SplitConfig, "train/val/test split")
    augment: AugmentConfig = section(AugmentConfig, "training augmentation")
    raters: str = key(
        "majority",
        "GM challenge: how the raters' masks make the target",
        choices=Registry("data_modules.gmchallenge.RATER_MODES"),
    )
    preset: str | None = key(
        None,
        "preprocessing preset (perone: GM challenge, Perone et al. 2018)",
        choices=Registry("data_modules.preprocessing.PRESETS", "perone"),
    )
    scoring: str = key(
        "native",
        "test metrics on each subject's native grid or the preprocessed grid",
        choices=Registry("evaluation.scoring.SCORING_MODES"),
    )
    phantom: PhantomConfig = section(PhantomConfig, "the generated phantom data set")


@dataclass
class TrainerConfig:
    max_epochs: int | None = key(
        None, "training epochs", range=Range(1, 1_000_000, integer=True), fallback=10, recipe="max_epochs"
    )
    accelerator: str = key("auto", "Lightning accelerator (auto, cpu, gpu, …)")
    devices: str | int | list = key("auto", "Lightning devices (auto, a count or a list of indices)")
    strategy: str = key("auto", "Lightning strategy (auto, ddp, …)")
    precision: str | int = key("auto", "auto: bf16-mixed on Ampere+ GPUs, 16-mixed on older, 32-true on CPU")
    deterministic: bool | str = key(
        True,
        "deterministic algorithms; warn: warn for ops without one (GPU: docs/reliability.md)",
        choices=(True, False, "warn"),
    )
    log_every_n_steps: int = key(10, "logging interval (steps)", range=Range(1, 1_000_000, integer=True))
    limit_train_batches: int | float | None = key(
        None, "training batches per epoch (a count, or a share if < 1)", range=Range(0, 1e9, lo_open=True)
    )
    limit_val_batches: int | float | None = key(
        None, "validation batches (a count, or a share if < 1)", range=Range(0, 1e9)
    )
    check_val_every_n_epoch: int = key(1, "validation interval (epochs)", range=Range(1, 1_000_000, integer=True))
    gradient_clip_val: float | None = key(None, "gradient clipping norm", range=Range(0, 1e9))
    num_sanity_val_steps: int = key(
        0, "validation steps before training (-1: all)", range=Range(-1, 1_000_000, integer=True)
    )
    enable_progress_bar: bool = key(True, "progress bar (else one line per epoch)")


@dataclass
class WandbConfig:
    enabled: bool = key(True, "log to Weights & Biases")
    mode: str | None = key(None, "null: offline unless WANDB_API_KEY is set", choices=("offline", "online", "disabled"))
    project: str = key("cordbench", "wandb project")
    entity: str | None = key(None, "wandb entity (team or user)")
    group: str | None = key(None, "wandb group")
    job_type: str = key("fit", "wandb job type")
    tags: list = key([], "wandb tags")
    log_images: bool = key(True, "log validation overlays", hparam="log_images")


@dataclass
class LoggerConfig:
    wandb: WandbConfig = section(WandbConfig, "Weights & Biases")


@dataclass
class RunConfig:
    """A run config (``cordbench fit|validate|test``, each sweep trial); LightningCLI-style sections."""

    name: str = key("run", "run name (folder name and wandb run name)")
    seed_everything: int = key(0, "seed of Python, numpy and torch", range=_SEED)
    output_dir: str | None = key(None, "run folder; null: outputs/runs/<name>")
    model: ModelConfig = section(ModelConfig, "network, loss and optimiser")
    data: DataConfig = section(DataConfig, "data set, preprocessing, sampling, split and augmentation")
    trainer: TrainerConfig = section(TrainerConfig, "Lightning Trainer arguments")
    logger: LoggerConfig = section(LoggerConfig, "experiment tracking")


# -------------------------------------------------------------------------------------- sweep file
@dataclass
class SearchConfig:
    algorithm: str = key("basic", "basic (grid / random variants) | optuna (TPE)", choices=("basic", "optuna"))
    num_samples: int = key(
        1, "basic: repeats of the grid; optuna: number of trials", range=Range(1, None, integer=True)
    )
    metric: str = key("val_dice", "any reported metric (val/<x> is reported as val_<x>)")
    mode: str = key("max", "maximise or minimise the metric", choices=("max", "min"))
    seed: int = key(0, "seed of the searcher", range=_SEED)
    max_concurrent_trials: int | None = key(
        None, "trials at once; null: as many as the resources allow", range=Range(1, None, integer=True)
    )
    n_startup_trials: int = key(4, "optuna: random trials before TPE starts", range=Range(0, None, integer=True))


@dataclass
class SweepSchedulerConfig:
    name: str = key("fifo", "trial scheduler", choices=("fifo", "asha"))
    time_attr: str = key("epoch", "asha: the time axis", choices=("epoch", "training_iteration"))
    grace_period: int = key(1, "asha: epochs before a trial may stop", range=Range(1, None, integer=True))
    reduction_factor: int = key(2, "asha: halving rate", range=Range(1, None, lo_open=True, integer=True))
    max_t: int | None = key(
        None, "asha: last epoch; null: the largest trainer.max_epochs of the sweep", range=Range(1, None, integer=True)
    )


@dataclass
class ResourcesConfig:
    cpu: int = key(1, "CPUs per trial", range=Range(0, None, lo_open=True, integer=True))
    gpu: float | str | None = key(
        None, "GPUs per trial: a fraction < 1, DDP workers > 1, or auto (1 if the cluster has GPUs); null: 0"
    )
    workers: int | None = key(
        None, "DDP processes per trial; null: gpu if gpu > 1, else 1", range=Range(1, None, integer=True)
    )


@dataclass
class FailureConfig:
    max_failures: int = key(2, "retries of a failed trial (-1: forever)", range=Range(-1, None, integer=True))
    fail_fast: bool = key(False, "stop the sweep at the first failed trial")


@dataclass
class SweepCheckpointConfig:
    num_to_keep: int = key(1, "checkpoints Ray keeps per trial", range=Range(1, None, integer=True))


@dataclass
class RayConfig:
    log_to_driver: bool = key(False, "print the trials' output in the driver")
    num_cpus: int | None = key(None, "CPUs of a local Ray instance; null: all", range=Range(1, None, integer=True))
    verbose: int = key(1, "Ray Tune verbosity", range=Range(0, 3, integer=True))


@dataclass
class SweepConfig:
    """A sweep file (``cordbench sweep``; ``sweeps.config``)."""

    name: str | None = key(None, "sweep folder <storage>/<name>; null: the file's stem")
    description: str = key("", "one line about the sweep")
    base: list = key([], "run config file(s): relative to the sweep file, the current folder or the repository")
    search: SearchConfig = section(SearchConfig, "how Ray Tune explores the space")
    scheduler: SweepSchedulerConfig = section(SweepSchedulerConfig, "trial scheduler")
    resources: ResourcesConfig = section(ResourcesConfig, "per trial")
    failure: FailureConfig = section(FailureConfig, "retries")
    checkpoint: SweepCheckpointConfig = section(SweepCheckpointConfig, "Ray checkpoints")
    storage: str = key("outputs/sweeps", "local folder or a URI (s3://, gs://)")
    ray: RayConfig = section(RayConfig, "the Ray instance")
    config: dict = key({}, "run-config values for every trial", free_form=True)
    space: dict = key({}, "dotted run-config key -> {grid|choice|uniform|loguniform|randint: values}", free_form=True)
    stop: dict = key({}, "stop a trial when a metric reaches a value (e.g. {epoch: 5})", free_form=True)
    source: dict = key({}, "where a resolved sweep came from (written by cordbench)", free_form=True)


# ---------------------------------------------------------------------------------------- the index
@dataclass(frozen=True)
class Key:
    """One declared key of a schema, by its dotted name."""

    dotted: str
    type: str  # the annotation as written (``float | None``)
    kinds: tuple[type, ...]  # the non-null types it admits
    default: Any
    help: str
    range: Range | None = None
    choices: tuple[Any, ...] | Registry | None = None
    fallback: Any = None
    recipe: str | None = None
    hparam: str | None = None
    free_form: bool = False
    section: type | None = None  # the dataclass of a section

    @property
    def typed(self) -> bool:
        """Whether values are type-checked: keys with a non-null default or fallback. A nullable key without
        one is checked by its range, choices or ``runs.config.validate`` (its value may be of several kinds)."""
        return self.default is not None or self.fallback is not None

    @property
    def name(self) -> str:
        return self.dotted.rsplit(".", 1)[-1]


def _kinds(annotation: Any) -> tuple[type, ...]:
    args = (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else (annotation,)
    )
    return tuple(typing.get_origin(a) or a for a in args if a is not type(None))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


@functools.cache
def keys(schema: type) -> dict[str, Key]:
    """Every key of ``schema`` (sections included, before their keys), by dotted name, in declaration order."""
    out: dict[str, Key] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            m = f.metadata
            dotted = prefix + f.name
            sect = hints[f.name] if m.get("section") else None
            default = None if sect else _default(f)
            out[dotted] = Key(
                dotted,
                str(f.type),
                _kinds(hints[f.name]),
                default,
                m.get("help", ""),
                m.get("range"),
                m.get("choices"),
                m.get("fallback"),
                m.get("recipe"),
                m.get("hparam"),
                bool(m.get("free_form")),
                sect,
            )
            if sect:
                walk(sect, dotted + ".")

    walk(schema, "")
    return out


def leaves(schema: type) -> dict[str, Key]:
    """The keys of ``schema`` that hold values (no sections)."""
    return {k: v for k, v in keys(schema).items() if v.section is None}


def children(schema: type, prefix: str = "") -> list[str]:
    """Names of the keys directly under ``prefix`` (``""``: top level; ``"model."``: the model section)."""
    depth = prefix.count(".")
    return [k.name for d, k in keys(schema).items() if d.startswith(prefix) and d.count(".") == depth]


def defaults(schema: type) -> dict[str, Any]:
    """The nested mapping of every default of ``schema`` (a fresh copy)."""
    return dataclasses.asdict(schema())


def get(schema: type, dotted: str) -> Key:
    """The :class:`Key` at ``dotted`` (KeyError when not declared)."""
    return keys(schema)[dotted]


def default(dotted: str, schema: type = RunConfig) -> Any:
    """The effective default of a key: its fallback for a recipe key, else its default."""
    k = get(schema, dotted)
    return k.fallback if k.fallback is not None else k.default


def coerce(k: Key, value: Any) -> Any:
    """``value`` as the key's declared type (int/float/bool/list; null and other types unchanged)."""
    if value is None:
        return None
    kind = k.kinds[0] if k.kinds else None
    if kind is float and not isinstance(value, bool):
        return float(value)
    if kind is int and not isinstance(value, bool):
        return int(value)
    if kind is bool:
        return bool(value)
    if kind is list:
        return list(value)
    return value


def hparams(cfg: Mapping[str, Any], schema: type = RunConfig) -> dict[str, Any]:
    """``SegmentationModule`` arguments from the keys that declare ``hparam`` (coerced to their type)."""
    from core.dotted import get as get_dotted

    return {k.hparam: coerce(k, get_dotted(cfg, k.dotted)) for k in keys(schema).values() if k.hparam}


def show(value: Any) -> str:
    """A value as written in YAML: ``null``, ``true``, ``[64, 64]``, ``cosine``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value)


def describe(k: Key, choices: tuple[Any, ...] | None = None) -> str:
    """``TYPE, default D[, range][, choices]`` of a key (``choices``: a registry's, resolved by the caller)."""
    if k.section is not None:
        return k.help
    text = f"{k.type}, default {show(k.default)}"
    if k.fallback is not None:
        text += f" (the model preset's recipe, else {show(k.fallback)})"
    if k.range is not None:
        text += f", range: {k.range.describe()}"
    shown = choices if choices is not None else k.choices if isinstance(k.choices, tuple) else None
    if shown is not None:
        text += ", choices: " + ", ".join(show(c) for c in shown)
    elif isinstance(k.choices, Registry):
        text += f", choices: {k.choices.listing or k.choices.path}"
    return text


def key_table(schema: type, resolve: Callable[[str], tuple[Any, ...] | None] | None = None, indent: str = "  ") -> str:
    """Every key of ``schema``: ``dotted.key  TYPE, default …, range …, choices …`` and its help below.

    ``resolve(dotted)`` gives the choices of a :class:`Registry` key that has no ``listing``.
    """
    lines = []
    for d, k in keys(schema).items():
        if k.section is not None:
            lines.append(f"{indent}{d}: {k.help}")
            continue
        found = resolve(d) if resolve and isinstance(k.choices, Registry) and not k.choices.listing else None
        lines.append(f"{indent}{d}  {describe(k, found)}")
        lines.append(f"{indent}      {k.help}")
    return "\n".join(lines)


T = TypeVar("T")


def from_mapping(
    cls: type[T], data: Mapping[str, Any], what: str, ignore: tuple[str, ...] = (), source: str | None = None
) -> T:
    """``cls(**data)`` for a dataclass; keys it does not declare are one error naming them and ``what``."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    kw = {k: v for k, v in data.items() if k not in ignore}
    unknown = sorted(set(kw) - set(names))
    if unknown:
        raise ConfigError(f"unknown keys {unknown} in {what}; known: {sorted(names)}", source)
    return cls(**kw)
