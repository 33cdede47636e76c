"""Named hyper-parameter sets of SCMODAL.

``"reference"`` reproduces the published scMODAL defaults exactly. ``"default"`` is the
preset scmosaic recommends; where it differs from the reference the reason is measured and
documented in the user guide.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal, get_args

import numpy as np

from .._choices import AnchorSimilarity, PresetName


@dataclass(frozen=True)
class Range:
    """Accepted values of one setting: a number (an int if ``integer``) in a range."""

    low: float
    high: float = math.inf
    integer: bool = False
    low_open: bool = False

    def describe(self) -> str:
        kind = "an int" if self.integer else "a number"
        low = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
        return f"{kind} {low}" + ("" if math.isinf(self.high) else f" and <= {self.high:g}")

    def check(self, name: str, value) -> None:
        """Raise a ``ValueError`` naming ``name`` and the accepted range unless it holds."""
        is_number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool
        )
        ok = is_number and math.isfinite(value) and value <= self.high
        ok = ok and (value > self.low if self.low_open else value >= self.low)
        if ok and self.integer:
            ok = isinstance(value, int | np.integer)
        if not ok:
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}.")


@dataclass(frozen=True)
class Flag:
    """Accepted values of an on/off setting: ``True`` or ``False``."""

    def describe(self) -> str:
        return "True or False"

    def check(self, name: str, value) -> None:
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}.")


@dataclass(frozen=True)
class Choice:
    """Accepted values of a setting named by a string: one of ``options``."""

    options: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def check(self, name: str, value) -> None:
        if value not in self.options:
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}.")


def _setting(default, accepted: Range | Flag | Choice):
    return field(default=default, metadata={"accepted": accepted})


COUNT = Range(1, integer=True)
WEIGHT = Range(0)


@dataclass(frozen=True)
class ModulePreset:
    n_latent: int = _setting(20, COUNT)
    n_hidden: int = _setting(512, COUNT)
    n_hidden_discriminator: int = _setting(512, COUNT)
    lambda_gan: float = _setting(1.0, WEIGHT)
    lambda_ae: float = _setting(10.0, WEIGHT)
    lambda_latent_cycle: float = _setting(10.0, WEIGHT)
    lambda_mnn: float = _setting(1.0, WEIGHT)
    lambda_geo: float = _setting(10.0, WEIGHT)
    n_neighbors_mnn: int = _setting(30, COUNT)
    # A cell with a mutual neighbour among its n_neighbors_mnn_local closest cells keeps only
    # those anchors (0: off, as in the reference); see _losses.mutual_nearest_from_similarity.
    n_neighbors_mnn_local: int = _setting(0, Range(0, integer=True))
    max_geo_similarity: float = _setting(0.975, Range(0, 1, low_open=True))
    clip: float = _setting(10.0, WEIGHT)  # 0: no clipping
    init_std: float = _setting(0.1, WEIGHT)  # 0: PyTorch's default initialisation
    latent_anchor_weight: float = _setting(0.0, WEIGHT)
    # How linked features are compared when anchors are chosen (_losses.linked_similarity).
    anchor_similarity: AnchorSimilarity = _setting("cosine", Choice(get_args(AnchorSimilarity)))
    # scmosaic's mosaic terms (not in the reference, which has neither batches nor pairs):
    # they are 0 unless setup_mudata has a batch_key / the MuData has paired cells.
    # 0.3: the most batch mixing and label transfer kept; 1 and 0 mixed less and transferred
    # labels worse (benchmarks/mosaic.py, M3)
    lambda_batch: float = _setting(0.3, WEIGHT)
    lambda_pair: float = _setting(10.0, WEIGHT)
    # Anchors of a link with paired cells also weigh each cell's similarity to the pairs
    # (model/_bridge.py; benchmarks/mosaic.py, M2); 0: linked features (and codes) only.
    bridge_anchor_weight: float = _setting(2.0, WEIGHT)


@dataclass(frozen=True)
class TrainPreset:
    # "auto": about 625 passes over the largest modality, between 1,000 and 2,000 iterations
    max_steps: int | Literal["auto"] = _setting(10_000, COUNT)
    batch_size: int = _setting(500, COUNT)
    n_critic: int = _setting(5, COUNT)
    lr: float = _setting(1e-3, Range(0, low_open=True))
    weight_decay: float = _setting(1e-3, WEIGHT)
    gradient_clip_norm: float = _setting(5.0, WEIGHT)  # 0: no clipping
    # stop when cross-modal neighbours stop consolidating (_convergence.py; only with
    # max_steps="auto" unless asked for)
    early_stopping: bool = _setting(False, Flag())


@dataclass(frozen=True)
class Preset:
    module: ModulePreset
    train: TrainPreset


PRESETS: dict[PresetName, Preset] = {
    "reference": Preset(ModulePreset(), TrainPreset()),
    # Measured on the Hao subset (pairing hidden; docs/user_guide/scmodal.md, "Presets"):
    # stronger anchors chosen with the latent codes, PyTorch's default initialisation, no
    # weight decay, a lower learning rate and one discriminator step per iteration raise
    # label transfer and lower FOSCTTM, and quality peaks near 1,000 iterations there.
    # Anchors within 5 neighbours where a cell has them: rare types keep their own partners
    # (Hao, PBMC 10k, SLN; benchmarks/rare_types.py).
    "default": Preset(
        ModulePreset(
            lambda_mnn=10.0, init_std=0.0, latent_anchor_weight=0.5, n_neighbors_mnn_local=5
        ),
        TrainPreset(max_steps="auto", n_critic=1, lr=3e-4, weight_decay=0.0, early_stopping=True),
    ),
}

PASSES_OVER_DATA = 625
# Query mapping (load_query_data) trains only the new batches' offsets and the query's own
# first encoder layer, from the reference's values (benchmarks/query.py).
QUERY_MAX_STEPS = 300
QUERY_LR = 1e-3
# Codes of at most this many cells per modality are kept with a trained model (its latent
# sketch), to which query mapping anchors new batches without the reference data.
SKETCH_SIZE = 5_000
MIN_STEPS, MAX_STEPS = 1_000, 2_000


@dataclass(frozen=True)
class EarlyStopping:
    """Settings of early stopping (``model/_convergence.py``; user guide, "Early stopping").

    Chosen with ``benchmarks/early_stopping.py`` on Hao, PBMC 10k and SLN.
    """

    every: int = 100  # iterations between checks
    # Small data: checks this far apart once ``every`` iterations would pass over the largest
    # modality more than ``small_data_passes`` times (fewer than 2,500 cells at batch size
    # 500). There the agreement keeps climbing after quality has levelled off: on the
    # 800-cell Hao subset (62 passes per 100 iterations) checks every 100 iterations stop at
    # 600-700 with the same label transfer and FOSCTTM as checks every 50 at 300-350.
    # Only without a ``batch_key``: batches mix more slowly than modalities agree. On a MIDAS
    # mosaic of three donors (1,200 cells per modality, ``benchmarks/query.py``'s de novo
    # model) checks every 50 stop at 300 with donor iLISI 0.72 / 0.67 (RNA-only / ADT-only
    # donors); every 100 stop at 600 with 0.79 / 0.75 and the same label transfer.
    every_small_data: int = 50
    small_data_passes: int = 20
    # progress: the agreement exceeds its best by this fraction (relative, so the same rule
    # fits data whose agreement levels off at 0.45 or 0.7)
    min_relative_gain: float = 0.1
    patience: int = 1  # checks without progress before stopping
    min_iterations: int = 300
    subsample: int = 2_000  # cells per modality whose neighbours are compared
    n_neighbors: int = 15


EARLY_STOPPING = EarlyStopping()
# Iterations per logging epoch of train() when neither the user nor early stopping sets it.
ITERATIONS_PER_EPOCH = 100


def check_interval(n_cells_largest: int, batch_size: int, n_batches: int = 0) -> int:
    """Iterations between early-stopping checks (see :class:`EarlyStopping`).

    ``n_batches`` is the number of categories of the ``batch_key`` (0 or 1: no batches).
    """
    rule = EARLY_STOPPING
    passes = rule.every * batch_size / n_cells_largest
    small_data = passes > rule.small_data_passes and n_batches < 2
    return rule.every_small_data if small_data else rule.every


def default_max_steps(n_cells_largest: int, batch_size: int) -> int:
    """Iterations for ~625 passes over the largest modality, clipped to [1,000, 2,000].

    625 passes are 1,000 iterations of 500 cells on the 800-cell Hao subset, where quality
    peaks. On PBMC 10k (6,855 cells) quality is flat from 500 to 3,000 iterations
    (``benchmarks/time_to_quality.py``), so larger data stop at 2,000 iterations instead of
    the reference's 10,000.
    """
    steps = round(PASSES_OVER_DATA * n_cells_largest / batch_size)
    return int(min(max(steps, MIN_STEPS), MAX_STEPS))


def get_preset(name: str) -> Preset:
    """Look up a preset by name with a clear error."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.") from None


def resolve(defaults, **overrides):
    """Preset values with the overrides applied, as a plain dict.

    ``None`` means "the preset's value" at every layer: an override left at ``None`` keeps
    it. No preset value is ``None``; switches that turn something off use 0.
    """
    settings = asdict(replace(defaults, **{k: v for k, v in overrides.items() if v is not None}))
    for f in fields(defaults):
        value = settings[f.name]
        if f.name == "max_steps" and isinstance(value, str):
            if value != "auto":
                raise ValueError(f"max_steps must be an int >= 1 or 'auto', got {value!r}.")
            continue
        f.metadata["accepted"].check(f.name, value)
    return settings


def _describe(field: str, part: str) -> str:
    values = {name: getattr(getattr(preset, part), field) for name, preset in PRESETS.items()}
    shown = {
        name: f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else repr(v)
        for name, v in values.items()
    }
    if len(set(shown.values())) == 1:
        return f"both presets: {shown['default']}"
    return "; ".join(f"{name} preset: {text}" for name, text in shown.items())


def document_presets(obj):
    """Fill ``{field}`` placeholders of ``obj.__doc__`` with every preset's value of the field.

    The values are written once, in :data:`PRESETS`; docstrings show them from there.
    """
    placeholders = {
        f.name: _describe(f.name, part)
        for part, cls in (("module", ModulePreset), ("train", TrainPreset))
        for f in fields(cls)
    }
    placeholders |= {
        "query_max_steps": f"{QUERY_MAX_STEPS:,}",
        "query_lr": f"{QUERY_LR:g}",
        "iterations_per_epoch": f"{ITERATIONS_PER_EPOCH:,}",
    }
    placeholders |= {
        f"early_stopping_{f.name}": f"{getattr(EARLY_STOPPING, f.name):,}"
        for f in fields(EarlyStopping)
    }
    obj.__doc__ = obj.__doc__.format_map(placeholders)
    return obj
