"""The scMODAL model, module, training plan and data module."""

from ._constants import Link
from ._data_module import UnpairedDataModule
from ._model import SCMODAL
from ._module import SCMODALModule
from ._presets import PRESETS
from ._training_plan import SCMODALTrainingPlan

__all__ = [
    "SCMODAL",
    "SCMODALModule",
    "SCMODALTrainingPlan",
    "UnpairedDataModule",
    "Link",
    "PRESETS",
]
