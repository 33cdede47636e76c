"""Preprocessing: normalisation and linked features."""

from ._adt_table import detect_species, load_adt_gene_table, match_proteins, normalize_feature_name
from ._cca import cca_links, diagonal_cca
from ._cca_algebra import mutual_nearest_pairs
from ._gene_activity import gene_activity
from ._links import link_features
from ._preprocess import preprocess

__all__ = [
    "preprocess",
    "link_features",
    "cca_links",
    "diagonal_cca",
    "mutual_nearest_pairs",
    "gene_activity",
    "load_adt_gene_table",
    "detect_species",
    "match_proteins",
    "normalize_feature_name",
]
