"""The run folder: the one place that names its files, writes them and reads them back.

A run folder is what one ``cordbench fit|validate|test`` run (and so every sweep trial) leaves::

    config.yaml              the resolved run config
    split.json               train / val / test subjects
    data.json                the data set description (name, root, task, contrast, …)
    metrics.csv              per-epoch metrics (Lightning's CSVLogger writes it)
    checkpoints/best.ckpt    best epoch by ``val/dice`` (Lightning's ModelCheckpoint)
    checkpoints/last.ckpt    last epoch
    test_metrics.csv         one row per held-out subject: ``subject`` + ``<class>/<metric>``
    test_summary.json        aggregated test metrics (+ checkpoint, model, preset, task)
    failure.json             why a fit stopped on an error (status, error, reason, epoch, step)
    predictions/             the scored test predictions on each subject's native grid
    qc/                      QC panels (one PNG per subject) and their report, index.html
    morphometrics.csv        the leaderboard's cached per-subject × level CSA comparison
    real_metrics.csv         ``test --real``: one row per scored real image (``subject`` + ``<class>/<metric>``)
    real_summary.json        ``test --real``: aggregated real metrics, skipped images, checkpoint and set keys
    real_predictions/        ``test --real``: the scored predictions on each real image's native grid
    wandb/                   the offline wandb run
    provenance.json          code, packages, data, hardware, command line and times of the run (runs.provenance)
    pip_freeze.txt           every installed package, ``name==version`` (beside provenance.json)
    MODEL_CARD.md            the model card of the run's checkpoint (runs.model_card)

Writers are used by :mod:`runs.runner`; readers by :mod:`sweeps.results` (through a
``read(relative path)`` function, so a run folder on S3/GCS reads the same way) and by
:mod:`leaderboard`. File formats are unchanged from the first release: folders written
before this module existed read identically (``tests/test_run_folder.py``). Sweep-only records
kept in a trial's run folder (``trial.json``, attempts, elapsed time) belong to :mod:`sweeps.records`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import InputError

CONFIG = "config.yaml"
SPLIT = "split.json"
DATA = "data.json"
METRICS = "metrics.csv"
CHECKPOINTS = "checkpoints"
BEST_CKPT_NAME = "best.ckpt"  # the best epoch by val/dice (ModelCheckpoint ``filename`` = its stem)
LAST_CKPT = "last.ckpt"  # Lightning's ``ModelCheckpoint.CHECKPOINT_NAME_LAST`` + ``.ckpt``
BEST = PurePosixPath(BEST_CKPT_NAME).stem
TEST_METRICS = "test_metrics.csv"
TEST_SUMMARY = "test_summary.json"
FAILURE = "failure.json"
MORPHOMETRICS = "morphometrics.csv"
EXTERNAL = "external.json"  # `cordbench score`: the folder scores another tool's masks (no checkpoint)
WANDB = "wandb"
PREDICTIONS = "predictions"  # <subject>_pred.nii.gz: the scored predictions (runs.subject_outputs)
QC = "qc"  # <subject>.png QC panels and the report
QC_INDEX = "index.html"  # the QC report, in qc/
REAL_METRICS = "real_metrics.csv"  # cordbench test --real (runs.real_eval); never test_metrics.csv
REAL_SUMMARY = "real_summary.json"
REAL_PREDICTIONS = "real_predictions"  # <image id>_pred.nii.gz
#: where a ``test --real`` writes its masks until every image is scored (then swapped onto REAL_PREDICTIONS)
REAL_STAGING = ".real_predictions.part"
PROVENANCE = "provenance.json"  # runs.provenance: also the name in a sweep folder and an export folder
PIP_FREEZE = "pip_freeze.txt"
MODEL_CARD = "MODEL_CARD.md"

#: Relative path of the best checkpoint inside a run folder.
BEST_CKPT = PurePosixPath(CHECKPOINTS, BEST_CKPT_NAME)

Reader = Callable[[str], "str | None"]


@dataclass(frozen=True)
class RunFolder:
    """One run folder: ``path`` on disk, or a relative path read through ``reader`` (remote storage).

    ``reader(relative path) -> text | None`` (None: no such file) lets :mod:`sweeps.results` read
    trials of a sweep stored at a URI; local folders need no reader.
    """

    path: Path
    reader: Reader | None = None

    # ------------------------------------------------------------------------------- paths
    def file(self, name: str | PurePosixPath) -> Path:
        """Path of a file of the folder (``name`` one of this module's constants)."""
        return Path(self.path) / name

    @property
    def config(self) -> Path:
        return self.file(CONFIG)

    @property
    def split(self) -> Path:
        return self.file(SPLIT)

    @property
    def data(self) -> Path:
        return self.file(DATA)

    @property
    def metrics(self) -> Path:
        return self.file(METRICS)

    @property
    def checkpoints(self) -> Path:
        return self.file(CHECKPOINTS)

    @property
    def best_ckpt(self) -> Path:
        return self.file(BEST_CKPT)

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / LAST_CKPT

    @property
    def test_metrics(self) -> Path:
        return self.file(TEST_METRICS)

    @property
    def test_summary(self) -> Path:
        return self.file(TEST_SUMMARY)

    @property
    def failure(self) -> Path:
        return self.file(FAILURE)

    @property
    def morphometrics(self) -> Path:
        return self.file(MORPHOMETRICS)

    @property
    def wandb(self) -> Path:
        return self.file(WANDB)

    @property
    def real_metrics(self) -> Path:
        return self.file(REAL_METRICS)

    @property
    def real_summary(self) -> Path:
        return self.file(REAL_SUMMARY)

    @property
    def provenance(self) -> Path:
        return self.file(PROVENANCE)

    @property
    def pip_freeze(self) -> Path:
        return self.file(PIP_FREEZE)

    @property
    def model_card(self) -> Path:
        return self.file(MODEL_CARD)

    def real_prediction(self, image_id: str, staged: bool = False) -> Path:
        """``real_predictions/<image id>_pred.nii.gz``: the scored prediction of one real image
        (``staged``: its place in :data:`REAL_STAGING` while the set is being scored)."""
        return self.file(REAL_STAGING if staged else REAL_PREDICTIONS) / f"{image_id}_pred.nii.gz"

    # ----------------------------------------------------------------------------- writers
    def write_config(self, text: str) -> Path:
        """``config.yaml`` (the resolved config, already dumped to YAML), atomically."""
        from core import io

        self.path.mkdir(parents=True, exist_ok=True)
        return io.write_text(self.config, text)

    def write_data_description(self, desc: Mapping[str, Any]) -> None:
        """``split.json`` (``desc['split']``) and ``data.json`` (the rest) of a data module's ``describe()``."""
        from core import io

        io.write_json(self.split, desc["split"])
        io.write_json(self.data, {k: v for k, v in desc.items() if k != "split"})

    def write_test_outputs(self, records: list[dict[str, Any]], summary: Mapping[str, Any]) -> None:
        """``test_metrics.csv`` (one row per subject) and ``test_summary.json``."""
        import pandas as pd

        from core import io

        io.write_csv(self.test_metrics, pd.DataFrame(records))
        io.write_json(self.test_summary, dict(summary))

    def start_real_outputs(self) -> None:
        """An empty :data:`REAL_STAGING` for the masks of a new ``test --real`` (a crashed attempt's
        leftovers removed); the earlier real results stay untouched until :meth:`write_real_outputs`."""
        import shutil

        staging = self.file(REAL_STAGING)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)

    def write_real_outputs(self, records: list[dict[str, Any]], summary: Mapping[str, Any]) -> None:
        """Swap the new real results in once every image is scored: the earlier summary removed first
        (no stale cache survives a crash in between), the staged masks renamed onto
        ``real_predictions/`` (the earlier masks removed), then ``real_metrics.csv`` (one row per
        scored real image) and ``real_summary.json`` (written last). A run interrupted before this
        keeps the earlier results whole: the folder never mixes two sets' scores."""
        import os
        import shutil

        import pandas as pd

        from core import io

        self.real_summary.unlink(missing_ok=True)
        final, staging = self.file(REAL_PREDICTIONS), self.file(REAL_STAGING)
        if final.exists():
            old = self.file(f".{REAL_PREDICTIONS}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        if staging.exists():
            os.replace(staging, final)
        io.write_csv(self.real_metrics, pd.DataFrame(records, columns=None if records else ["subject"]))
        io.write_json(self.real_summary, dict(summary))

    def write_provenance(self, record: Mapping[str, Any], freeze: list[str] | None = None) -> Path:
        """``provenance.json`` and (when ``freeze`` is given) ``pip_freeze.txt``, atomically."""
        from core import io

        self.path.mkdir(parents=True, exist_ok=True)
        if freeze is not None:
            io.write_text(self.pip_freeze, "".join(f"{line}\n" for line in freeze))
        return io.write_json(self.provenance, dict(record))

    def write_model_card(self, text: str) -> Path:
        """``MODEL_CARD.md``, atomically."""
        from core import io

        return io.write_text(self.model_card, text)

    def write_failure(self, record: Mapping[str, Any]) -> Path:
        """``failure.json``."""
        from core import io

        return io.write_json(self.failure, dict(record))

    def clear_failure(self) -> None:
        """Remove a stale ``failure.json`` of an earlier attempt."""
        self.failure.unlink(missing_ok=True)

    def write_morphometrics(self, frame: Any) -> Path:
        """The leaderboard's ``morphometrics.csv`` cache."""
        from core import io

        return io.write_csv(self.morphometrics, frame)

    # ----------------------------------------------------------------------------- readers
    def text(self, name: str | PurePosixPath) -> str | None:
        """Text of a file of the folder, None when it does not exist or cannot be read."""
        if self.reader is not None:
            return self.reader(str(PurePosixPath(str(self.path), name)))
        p = self.file(name)
        try:
            return p.read_text() if p.is_file() else None
        except OSError:
            return None

    def _json(self, name: str) -> Any:
        """A JSON file; a missing or unreadable one is one line naming the file."""
        path = self.file(name)
        try:
            text = self.text(name) if self.reader is not None else path.read_text()
        except FileNotFoundError:
            text = None
        except OSError as exc:
            raise InputError(f"unreadable {name} ({exc})", path) from None
        if text is None:
            raise InputError(f"{name} missing: not a cordbench run folder", path)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise InputError(f"unreadable {name} ({exc})", path) from None

    def read_config(self) -> dict[str, Any]:
        """The resolved ``config.yaml``."""
        if self.reader is not None:
            from core import yamlio

            text = self.text(CONFIG)
            if text is None:
                raise InputError(f"{CONFIG} missing: not a cordbench run folder", self.config)
            return yamlio.loads(text, self.config)
        from runs.config import load_yaml

        if not self.config.exists():
            raise InputError(f"{CONFIG} missing: not a cordbench run folder", self.config)
        return load_yaml(self.config)

    def read_data_description(self) -> dict[str, Any]:
        """``data.json``."""
        return self._json(DATA)

    def read_split(self) -> dict[str, Any]:
        """``split.json``."""
        return self._json(SPLIT)

    def test_subjects(self) -> list[str]:
        """Held-out subjects (``split.json``'s ``test``)."""
        split = self.read_split()
        test = split.get("test") if isinstance(split, dict) else None
        if not test:
            raise InputError(f"{SPLIT} has no test subjects", self.split)
        return [str(s) for s in test]

    def read_test_summary(self) -> dict[str, Any]:
        """``test_summary.json``."""
        return self._json(TEST_SUMMARY)

    def read_real_summary(self) -> dict[str, Any] | None:
        """``real_summary.json``, None when absent or unreadable (then the real scores are recomputed)."""
        text = self.text(REAL_SUMMARY)
        try:
            data = json.loads(text) if text is not None else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def read_real_metrics(self):
        """``real_metrics.csv`` as a DataFrame (``subject`` as text)."""
        import pandas as pd

        return pd.read_csv(self.real_metrics, dtype={"subject": str})

    def read_provenance(self) -> dict[str, Any] | None:
        """``provenance.json``, None when absent or unreadable (a run from before provenance was recorded)."""
        text = self.text(PROVENANCE)
        try:
            data = json.loads(text) if text is not None else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def read_failure(self) -> dict[str, Any] | None:
        """``failure.json`` of an earlier attempt, None when absent or unreadable."""
        text = self.text(FAILURE)
        try:
            return json.loads(text) if text is not None else None
        except ValueError:
            return None

    def read_test_metrics(self):
        """``test_metrics.csv`` as a DataFrame (pandas' errors propagate: the caller words the reason)."""
        import pandas as pd

        if self.reader is not None:
            import io as _io

            text = self.text(TEST_METRICS)
            if text is None:
                raise FileNotFoundError(str(self.test_metrics))
            return pd.read_csv(_io.StringIO(text))
        return pd.read_csv(self.test_metrics)
