"""Bundled data and the pseudo-unpaired evaluation protocol."""

from ._hao2021 import hao2021_pbmc_cite
from ._unpair import hide_pairing, pairing_order

__all__ = ["hao2021_pbmc_cite", "hide_pairing", "pairing_order"]
