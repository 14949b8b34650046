"""The data sets ``data.name`` can name: an explicit table of the data module classes."""

from __future__ import annotations

from typing import Any

from core.errors import ConfigError
from data_modules.base import SegmentationDataModule
from data_modules.gmchallenge_dm import GMChallengeDataModule
from data_modules.phantom_dm import PhantomDataModule
from data_modules.spine_generic import SpineGenericDataModule

DATAMODULES: dict[str, type[SegmentationDataModule]] = {
    cls.registry_name: cls for cls in (PhantomDataModule, SpineGenericDataModule, GMChallengeDataModule)
}


def build_datamodule(cfg_data: dict[str, Any]) -> SegmentationDataModule:
    """Instantiate the data module named by ``cfg_data['name']``."""
    name = cfg_data["name"]
    if name not in DATAMODULES:
        raise ConfigError(f"key 'data.name': unknown data set {name!r}; known: {', '.join(sorted(DATAMODULES))}")
    return DATAMODULES[name](cfg_data)
