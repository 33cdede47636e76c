"""Query mapping: what a query model takes from its reference, and query features by name.

A reference is read once into a :class:`ReferenceParts` (from a saved folder or a model
object); the query model keeps its architecture as a plain dict (saved with the model) and
receives its weights with one new offset row per new batch (:func:`extend_batch_offsets`).
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse

from .._keys import batch_registry_key
from ._layout import parse_links

logger = logging.getLogger(__name__)

# Below this share of a modality's trained features, a query is mapped with a warning.
MIN_PRESENT_FRACTION = 0.8


@dataclass
class ReferenceParts:
    """What query mapping needs of a trained reference model."""

    registry: dict
    init_params: dict
    state_dict: dict
    trained_features: dict[str, list[str]]
    latent_sketch: dict[str, np.ndarray] | None = None
    normalization: dict[str, str] | None = None

    @property
    def setup_args(self) -> dict:
        return self.registry["setup_args"]

    @property
    def batch_key(self) -> str | None:
        return self.setup_args.get("batch_key")

    @property
    def links(self) -> list[tuple[str, str, str, str]]:
        """The reference's links as ``(mod_a, mod_b, key_a, key_b)``."""
        parsed = parse_links(self.setup_args["links"], self.setup_args["modalities"])
        return [(link.mod_a, link.mod_b, link.key_a, link.key_b) for link in parsed]

    def modality_batches(self) -> dict[str, list[str]]:
        """Each modality's batch categories in its registry-code order."""
        fields = self.registry["field_registries"]
        return {
            m: [
                str(c)
                for c in fields[batch_registry_key(m)]["state_registry"]["categorical_mapping"]
            ]
            for m in self.setup_args["modalities"]
        }

    def architecture(self) -> dict:
        """The module's shape, as the query model keeps it: a plain, saveable dict."""
        per_modality = self.modality_batches()
        categories = list(dict.fromkeys(c for cats in per_modality.values() for c in cats))
        position = {c: i for i, c in enumerate(categories)}
        return {
            "features": {m: list(names) for m, names in self.trained_features.items()},
            "links": [(a, b) for a, b, _, _ in self.links],
            "batch_categories": categories,
            "modality_batches": {
                m: [position[c] for c in cats] for m, cats in per_modality.items()
            },
            # The registered layer of every reference modality, also those a query lacks.
            "layers": dict(self.setup_args.get("layers") or {}),
            "normalization": dict(self.normalization or {}),
        }

    @property
    def is_query(self) -> bool:
        return bool(self.model_kwargs(keep_architecture=True).get("reference_architecture"))

    def model_kwargs(self, keep_architecture: bool = False) -> dict:
        """Arguments the reference model was made with (its preset, sizes, weights, seed)."""
        params = self.init_params
        kwargs = dict(params.get("non_kwargs", params))
        if not keep_architecture:
            kwargs.pop("reference_architecture", None)
        return kwargs


def read_reference(reference) -> ReferenceParts:
    """The parts of a reference given as a model object or a folder written by ``save``."""
    from scvi.model.base._save_load import _load_saved_files

    if isinstance(reference, str | Path):
        if not (Path(reference) / "model.pt").is_file():
            raise FileNotFoundError(
                f"No saved SCMODAL in {str(reference)!r}: expected "
                f"{Path(reference) / 'model.pt'}, written by model.save(dir_path)."
            )
        attr_dict, var_names, state_dict, _ = _load_saved_files(
            str(reference), load_adata=False, map_location="cpu"
        )
        state_dict.pop("pyro_param_store", None)  # scvi-tools' slot for pyro models
        trained = attr_dict.get("trained_features_") or {
            m: list(names) for m, names in dict(var_names).items()
        }
        parts = ReferenceParts(
            attr_dict["registry_"],
            attr_dict["init_params_"],
            state_dict,
            trained,
            attr_dict.get("latent_sketch_"),
            attr_dict.get("normalization_"),
        )
        if parts.is_query:
            raise ValueError(
                f"{str(reference)!r} is a query model; map new data onto its reference instead."
            )
        return parts
    if not hasattr(reference, "module") or not hasattr(reference, "trained_features_"):
        raise TypeError(
            "reference must be a trained SCMODAL or the folder it was saved to, got "
            f"{type(reference).__name__}."
        )
    if getattr(reference, "reference_architecture", None):
        raise ValueError("reference is a query model; map new data onto its reference instead.")
    if not reference.is_trained_:
        raise ValueError("The reference model is not trained: call reference.train() first.")
    return ReferenceParts(
        reference.adata_manager.registry,
        reference.init_params_,
        {k: v.detach().cpu().clone() for k, v in reference.module.state_dict().items()},
        {m: list(names) for m, names in reference.trained_features_.items()},
        getattr(reference, "latent_sketch_", None),
        getattr(reference, "normalization_", None),
    )


def query_state_dict(state_dict: dict, n_batches: int, modalities: list[str]) -> dict:
    """The reference's weights as a query model starts from them.

    Zero offset rows are appended up to ``n_batches`` batches (a zero row adds nothing: before
    training a new batch is encoded as if it had no batch offset), and the adapter of each
    query modality starts as a copy of the reference encoder's first layer. The reference's
    own tensors are the same as before.
    """
    extended = {}
    for key, value in state_dict.items():
        if "_batch_offsets." in key and value.shape[0] < n_batches:
            padding = value.new_zeros((n_batches - value.shape[0], *value.shape[1:]))
            value = torch.cat([value, padding])
        extended[key] = value
    for m in modalities:
        for name in ("weight", "bias"):
            extended[f"query_input_layers.{m}.{name}"] = state_dict[
                f"encoders.{m}.0.{name}"
            ].clone()
    return extended


def _reindex_columns(matrix, columns: np.ndarray, n_out: int):
    """``matrix`` with column ``columns[j]`` moved to ``j``; ``-1`` gives a zero column."""
    present = np.flatnonzero(columns >= 0)
    selector = sparse.csr_matrix(
        (np.ones(len(present), dtype=np.float32), (columns[present], present)),
        shape=(matrix.shape[1], n_out),
    )
    if sparse.issparse(matrix):
        return (sparse.csr_matrix(matrix) @ selector).astype(matrix.dtype)
    out = np.zeros((matrix.shape[0], n_out), dtype=np.asarray(matrix).dtype)
    out[:, present] = np.asarray(matrix)[:, columns[present]]
    return out


def align_features(adata: AnnData, trained: list[str], modality: str) -> tuple[AnnData, int]:
    """A copy of ``adata`` with exactly the ``trained`` features, in order (absent: zeros).

    ``.X`` and every layer are reordered; ``.obs``, ``.obsm``, ``.obsp`` and ``.uns`` are
    kept (``.varm`` and ``.raw``, which describe the query's own features, are not). Returns
    the copy and the number of trained features ``adata`` lacked.
    """
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()].unique()[:5].tolist()
        raise ValueError(f"Query modality {modality!r} has duplicated feature names, e.g. {dup}.")
    columns = adata.var_names.get_indexer(pd.Index(trained))
    n_missing = int((columns < 0).sum())
    if n_missing == len(trained):
        raise ValueError(
            f"Query modality {modality!r} shares no feature with the reference's "
            f"{len(trained)} (e.g. {trained[:3]}; the query has {adata.var_names[:3].tolist()}): "
            "check that both use the same feature names (gene symbols vs IDs, species, panel)."
        )
    share = 1 - n_missing / len(trained)
    if n_missing:
        missing = [trained[j] for j in np.flatnonzero(columns < 0)[:5]]
        logger.info(
            "Query modality %r lacks %d of the reference's %d features (e.g. %s); "
            "they are filled with zeros.",
            modality,
            n_missing,
            len(trained),
            missing,
        )
    if share < MIN_PRESENT_FRACTION:
        warnings.warn(
            f"Query modality {modality!r} has only {share:.0%} of the reference's features "
            f"({len(trained) - n_missing} of {len(trained)}); the missing ones are read as "
            "zeros and its mapping may be poor.",
            UserWarning,
            stacklevel=3,
        )
    aligned = AnnData(
        X=_reindex_columns(adata.X, columns, len(trained)),
        obs=adata.obs.copy(),
        var=pd.DataFrame(index=pd.Index(trained, name=adata.var_names.name)),
        obsm={k: v.copy() for k, v in adata.obsm.items()},
        obsp={k: v.copy() for k, v in adata.obsp.items()},
        layers={k: _reindex_columns(v, columns, len(trained)) for k, v in adata.layers.items()},
        uns=copy.deepcopy(dict(adata.uns)),
    )
    return aligned, n_missing
