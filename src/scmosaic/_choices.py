"""Names users choose settings by, written once where nothing heavy is imported.

The command line parses and checks its arguments before torch, scvi-tools or scanpy load,
so the names its options accept live here: the modality kinds of :mod:`scmosaic.pp` and
the model presets, whose values stay in :data:`scmosaic.model.PRESETS`.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["rna", "adt", "atac"]
"""Kinds of modality that preprocessing and the protein -> gene table tell apart."""

PresetName = Literal["default", "reference"]
"""Names of the model presets; their values are :data:`scmosaic.model.PRESETS`."""

AnchorSimilarity = Literal["cosine", "euclidean"]
"""How linked features are compared when minibatch anchors are chosen (``SCMODAL``)."""

ProteinNormalization = Literal["clr", "log1p"]
"""How :func:`scmosaic.pp.preprocess` normalises protein (ADT) counts: ``"clr"``, the per-cell
centred log-ratio; ``"log1p"``, ``normalize_total`` and ``log1p`` as for RNA."""

FeatureScale = Literal["feature", "modality"]
"""How ``SCMODAL`` scales a modality's centred features: by each feature's own standard
deviation, or by one scale for the whole modality (the features' relative spread is kept)."""
