"""Phantom data module: the built-in synthetic cohort, generated on first use and cached."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from core.paths import output_dir
from data_modules.phantom.options import DEFAULT_CONTRASTS, parse_contrasts
from data_modules.phantom.randomise_options import RandomiseOptions, from_config
from data_modules.spine_generic import SpineGenericDataModule


def default_phantom_root(
    subjects: int,
    seed: int,
    snr: float,
    dwi: bool,
    randomise: RandomiseOptions | None = None,
    contrasts: tuple[str, ...] | None = None,
) -> Path:
    """Cache folder for a phantom cohort with these generation options.

    A cohort of other than the default contrasts gets ``-<contrast>-<contrast>…``; a randomised
    cohort's folder name ends with ``-rand<digest of its randomisation options>``.
    """
    tag = f"phantom-n{subjects}-s{seed}-snr{snr:g}" + ("-dwi" if dwi else "")
    if contrasts is not None and tuple(contrasts) != DEFAULT_CONTRASTS:
        tag += "-" + "-".join(contrasts)
    if randomise is not None:
        digest = hashlib.sha256(json.dumps(randomise.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
        tag += f"-rand{digest}"
    return output_dir() / "data" / tag


class PhantomDataModule(SpineGenericDataModule):
    """The phantom is a spine-generic BIDS tree, read with the same indexer as the real data."""

    registry_name = "phantom"

    def root(self) -> Path:
        p = self.cfg["phantom"]
        randomise = from_config(p.get("randomise"))
        contrasts = parse_contrasts(p["contrasts"]) if p.get("contrasts") else None
        root = (
            Path(self.cfg["root"])
            if self.cfg.get("root")
            else default_phantom_root(
                int(p["subjects"]), int(p["seed"]), float(p["snr"]), bool(p["dwi"]), randomise, contrasts
            )
        )
        if not (root / "participants.tsv").exists():
            from data_modules.phantom import generate_cohort

            generate_cohort(
                root,
                n_subjects=int(p["subjects"]),
                seed=int(p["seed"]),
                snr=float(p["snr"]),
                dwi=bool(p["dwi"]),
                randomise=randomise,
                **({"contrasts": contrasts} if contrasts else {}),
            )
        return root

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["root"] = str(self.root())
        return out
