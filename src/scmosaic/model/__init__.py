"""The scMODAL model, module, training plan and data module."""

from ._data_module import UnpairedDataModule
from ._layout import DataLayout, Link, MosaicBatch, PairedCells
from ._model import SCMODAL
from ._module import SCMODALModule
from ._presets import PRESETS
from ._training_plan import SCMODALTrainingPlan

__all__ = [
    "SCMODAL",
    "SCMODALModule",
    "SCMODALTrainingPlan",
    "UnpairedDataModule",
    "DataLayout",
    "Link",
    "MosaicBatch",
    "PairedCells",
    "PRESETS",
]
