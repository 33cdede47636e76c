"""Input checks shared by every public function: written once, worded once."""

from __future__ import annotations

from anndata import AnnData
from mudata import MuData


def get_modality(mdata: MuData, modality: str, role: str = "") -> AnnData:
    """``mdata.mod[modality]``, or a ``KeyError`` that names the modality and what exists.

    Parameters
    ----------
    mdata
        The MuData.
    modality
        Name of the modality.
    role
        What the modality is for, put in front of the message (e.g. ``"Reference"``).
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"Expected a MuData, got {type(mdata).__name__}.")
    if modality not in mdata.mod:
        what = f"{role} modality" if role else "Modality"
        raise KeyError(f"{what} {modality!r} is not in the MuData; it has {list(mdata.mod)}.")
    return mdata.mod[modality]
