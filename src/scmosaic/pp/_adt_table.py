"""Protein (ADT) to gene correspondence tables and antibody-name matching."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from os import PathLike
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["detect_species", "load_adt_gene_table", "match_proteins", "normalize_feature_name"]

Species = Literal["human", "mouse"]
# scmosaic's own tables, written from public antibody-target knowledge (docs/adt_table_agreement)
PACKAGED_TABLES: dict[str, str] = {"human": "human_adt_genes.csv", "mouse": "mouse_adt_genes.csv"}

_TOTALSEQ_SUFFIX = re.compile(r"[\s_-]*total(?:seq)?[\s_-]*[abc]$", re.IGNORECASE)
# BioLegend TotalSeq catalogue numbers ("ADT_CD115_A0105", "CD3-B0034") and the "ADT_"
# prefix that CITE-seq-Count and Cell Ranger feature references often add.
_CATALOGUE_SUFFIX = re.compile(r"[\s_.-]+[abcd]0\d{3}$", re.IGNORECASE)
_ADT_PREFIX = re.compile(r"^adt[\s_.-]+", re.IGNORECASE)


def _strip_decorations(name: object) -> str:
    """Name without an ``ADT_`` prefix, a TotalSeq suffix or a TotalSeq catalogue number."""
    stripped = _ADT_PREFIX.sub("", str(name).strip())
    stripped = _CATALOGUE_SUFFIX.sub("", stripped)
    return _TOTALSEQ_SUFFIX.sub("", stripped)


_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_CLONE_SUFFIX = re.compile(r"\.\d+$")
# A dot is dropped for loose matching unless it separates two digits: "cd4.1" must
# never collapse into "cd41".
_LOOSE_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")
_PARENTHESISED = re.compile(r"^(?P<outer>[^()]*?)\s*\((?P<inner>[^()]+)\)$")

# (name column, gene column, alias columns), compared case-insensitively.
_LAYOUTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("protein", "genes", ("aliases",)),  # scmosaic
    ("protein name", "rna name", ()),  # MaxFuse
    ("adt_name", "symbol", ()),  # TEA-seq
    ("name", "rna", ("specificity",)),  # totalVI (mouse)
    ("specificity", "rna", ()),
)
_LOADED_COLUMNS = ["protein", "key", "genes", "ignored"]

TableLike = str | PathLike | pd.DataFrame | Mapping[str, object] | None


def normalize_feature_name(name: str) -> str:
    """Normalise an antibody/feature name for matching.

    Strips surrounding whitespace, an ``ADT_`` prefix, a TotalSeq catalogue number
    (``_A0105``, ``-B0034``) and a TotalSeq suffix (``_TotalSeqB``, ``-TotalSeqC``,
    `` TotalSeqA``, ``_TotalA``), lowercases, maps every run of
    non-ASCII-alphanumeric characters (punctuation, spaces, Greek letters, ...)
    to a single ``"."`` and strips leading/trailing dots.

    Parameters
    ----------
    name
        Raw feature name.

    Returns
    -------
    str
        The normalised key.

    Examples
    --------
    >>> normalize_feature_name("HLA-DR")
    'hla.dr'
    >>> normalize_feature_name("CD11a/CD18")
    'cd11a.cd18'
    >>> normalize_feature_name("CD3_TotalSeqB")
    'cd3'
    >>> normalize_feature_name("TCR Vδ2")
    'tcr.v.2'
    >>> normalize_feature_name("ADT_CD115(CSF-1R)_A0105")
    'cd115.csf.1r'
    """
    stripped = _strip_decorations(name)
    return _NON_ALNUM.sub(".", stripped.lower()).strip(".")


def _parse_genes(value: object) -> tuple[str, ...]:
    """Gene symbols of a table cell; empty for ``Ignore``/missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    if isinstance(value, str):
        if value.strip().lower().startswith("ignore"):
            return ()
        value = value.split("/")
    genes = (str(g).strip() for g in value)
    return tuple(dict.fromkeys(g for g in genes if g))


def _split_aliases(value: object) -> list[str]:
    if not isinstance(value, str):
        return []
    return [a.strip() for a in value.split(";") if a.strip()]


def _check_species(species: str) -> None:
    if species not in PACKAGED_TABLES:
        raise ValueError(f"species must be one of {sorted(PACKAGED_TABLES)}, got {species!r}.")


def _read_packaged_table(species: str = "human") -> pd.DataFrame:
    source = resources.files(__package__) / "data" / PACKAGED_TABLES[species]
    with source.open("r", encoding="utf-8-sig") as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*$")
_ENSEMBL_ID = re.compile(r"^ENS[A-Z]*\d{6,}")
MIN_SYMBOLS_FOR_SPECIES = 20


def detect_species(gene_names: Iterable[str]) -> Species | None:
    """The species whose gene-symbol case ``gene_names`` follow, or ``None`` when unclear.

    Human symbols are upper case (``CD4``, ``HLA-DRA``), mouse symbols title case (``Cd4``,
    ``H2-Ab1``). Names without a letter after the first character (``Cd2``'s ``d`` counts)
    and Ensembl IDs are not counted; a species is returned when at least
    ``MIN_SYMBOLS_FOR_SPECIES`` names are counted and one case outnumbers the other 2:1.

    Examples
    --------
    >>> detect_species(["Cd4", "Cd8a", "Actb"] * 10)
    'mouse'
    >>> detect_species(["CD4", "CD8A", "ACTB"] * 10)
    'human'
    >>> detect_species(["ENSG00000010610"] * 30) is None
    True
    """
    upper = title = 0
    for name in map(str, gene_names):
        rest = name[1:]
        if not _SYMBOL.match(name) or _ENSEMBL_ID.match(name) or not any(map(str.isalpha, rest)):
            continue
        if name.isupper():
            upper += 1
        elif name[0].isupper() and rest == rest.lower():
            title += 1
    if upper + title < MIN_SYMBOLS_FOR_SPECIES:
        return None
    if title >= 2 * upper:
        return "mouse"
    if upper >= 2 * title:
        return "human"
    return None


def _to_frame(table: TableLike, species: str = "human") -> pd.DataFrame:
    if table is None:
        return _read_packaged_table(species)
    if isinstance(table, pd.DataFrame):
        return table
    if isinstance(table, Mapping):
        return pd.DataFrame({"protein": list(table.keys()), "genes": list(table.values())})
    return pd.read_csv(table, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def _detect_layout(columns: Sequence[str]) -> tuple[str, str, list[str]]:
    lower = {str(c).strip().lower(): c for c in columns}
    for name_col, gene_col, alias_cols in _LAYOUTS:
        if name_col in lower and gene_col in lower:
            aliases = [lower[a] for a in alias_cols if a in lower]
            return lower[name_col], lower[gene_col], aliases
    expected = "; ".join(f"'{n}' + '{g}'" for n, g, _ in _LAYOUTS)
    raise ValueError(
        f"Cannot recognise the columns of the ADT gene table {list(columns)}; "
        f"expected one of the column pairs: {expected}."
    )


def load_adt_gene_table(
    table: TableLike = None,
    on_ambiguous: Literal["raise", "drop"] = "raise",
    species: Species = "human",
) -> pd.DataFrame:
    """Load a protein-to-gene table into a normalised long format.

    Parameters
    ----------
    table
        ``None`` for scmosaic's packaged table of ``species``; a path to a CSV file; a
        :class:`~pandas.DataFrame`; or a dict ``{protein: "GENE1/GENE2"}`` (values
        may also be lists, ``None`` or ``"Ignore"``). Recognised column layouts
        (case-insensitive): ``protein, genes[, aliases]`` (scmosaic),
        ``Protein name, RNA name`` (MaxFuse; a gene cell starting with
        ``Ignore`` marks an ignored target), ``adt_name, symbol`` (TEA-seq) and
        ``name``/``Specificity`` + ``RNA`` (totalVI). Empty gene cells mean
        ignored.
    on_ambiguous
        What to do when a key maps to different gene sets in different rows:
        ``"raise"`` a :class:`ValueError`, or ``"drop"`` those keys with a warning
        (useful for third-party tables with inconsistent rows).
    species
        Which packaged table ``table=None`` means: ``"human"`` or ``"mouse"`` (mouse gene
        symbols, mouse-specific antibodies such as Ly-6C, F4/80, TER-119, NK-1.1, I-A/I-E).

    Returns
    -------
    pandas.DataFrame
        One row per distinct normalised name or alias, with columns ``protein``
        (the table's name), ``key`` (:func:`normalize_feature_name` of the name or
        alias), ``genes`` (tuple of gene symbols, empty if ignored) and
        ``ignored`` (bool).

    Raises
    ------
    ValueError
        If the columns are not recognised, the table is empty, or (with
        ``on_ambiguous="raise"``) a key maps to different gene sets.

    Examples
    --------
    >>> lut = load_adt_gene_table({"CD3": "CD3D/CD3E/CD3G", "IgG1": "Ignore"})
    >>> lut[["key", "genes", "ignored"]].values.tolist()
    [['cd3', ('CD3D', 'CD3E', 'CD3G'), False], ['igg1', (), True]]
    """
    _check_species(species)
    frame = _to_frame(table, species)
    name_col, gene_col, alias_cols = _detect_layout(frame.columns)
    records = []
    for _, row in frame.iterrows():
        protein = row[name_col]
        if not isinstance(protein, str) or not protein.strip():
            continue
        genes = _parse_genes(row[gene_col])
        names = [protein] + [a for col in alias_cols for a in _split_aliases(row[col])]
        for key in dict.fromkeys(map(normalize_feature_name, names)):
            if key:
                records.append((protein.strip(), key, genes, not genes))
    if on_ambiguous not in ("raise", "drop"):
        raise ValueError(f"on_ambiguous must be 'raise' or 'drop', not {on_ambiguous!r}.")
    if not records:
        raise ValueError("The ADT gene table is empty (no named proteins).")
    long = pd.DataFrame.from_records(records, columns=_LOADED_COLUMNS)
    gene_sets = long.groupby("key", sort=False)["genes"].agg(lambda s: {frozenset(g) for g in s})
    ambiguous = gene_sets[gene_sets.map(len) > 1].index
    if len(ambiguous) and on_ambiguous == "drop":
        warnings.warn(f"Dropping ambiguous ADT table keys: {list(ambiguous)}.", stacklevel=2)
        long = long[~long["key"].isin(ambiguous)]
    elif len(ambiguous):
        key = ambiguous[0]
        rows = long.loc[long["key"] == key, ["protein", "genes"]].values.tolist()
        raise ValueError(
            f"Ambiguous ADT gene table: key {key!r} maps to different gene sets "
            f"{rows} ({len(ambiguous)} ambiguous key(s) in total)."
        )
    return long.drop_duplicates("key").reset_index(drop=True)


def match_proteins(
    protein_names: Iterable[str], table: TableLike = None, species: Species = "human"
) -> pd.DataFrame:
    """Match antibody names to a protein-to-gene table.

    Each name is tried, in order, as: (1) its exact normalised key; (2) the key
    without a clone suffix such as ``.1``/``-2`` (``CD4.1`` -> ``cd4``, while
    ``CD41`` stays CD41); (3) a punctuation-insensitive key (``HLADR`` ==
    ``HLA-DR``; a separator between two digits is kept, so ``cd4.1`` never equals
    ``cd41``); (4) for ``"B220 (CD45R)"``-style names, the parenthesised part and
    then the part before it. Prefix or substring matches never happen.

    Parameters
    ----------
    protein_names
        Antibody / ADT feature names, e.g. ``adata.var_names``.
    table
        Anything accepted by :func:`load_adt_gene_table`, or its output.
    species
        The packaged table ``table=None`` means (see :func:`load_adt_gene_table`).

    Returns
    -------
    pandas.DataFrame
        One row per input name with columns ``protein`` (input name),
        ``table_protein`` (matched table name or NaN), ``genes`` (tuple) and
        ``status`` (``"linked"``, ``"ignored"`` or ``"unmatched"``).

    Examples
    --------
    >>> res = match_proteins(["CD4.1", "cd41", "HLADR_TotalSeqB", "IgG1", "foo"])
    >>> res[["table_protein", "status"]].values.tolist()  # doctest: +NORMALIZE_WHITESPACE
    [['CD4', 'linked'], ['CD41', 'linked'], ['HLA-DR', 'linked'],
     ['Mouse IgG1', 'ignored'], [nan, 'unmatched']]
    """
    is_loaded = isinstance(table, pd.DataFrame) and set(_LOADED_COLUMNS) <= set(table.columns)
    lut = table if is_loaded else load_adt_gene_table(table, species=species)
    exact = {key: i for i, key in enumerate(lut["key"])}
    loose: dict[str, int | None] = {}
    for key, i in exact.items():
        loose_key = _LOOSE_DOT.sub("", key)
        j = loose.setdefault(loose_key, i)
        if j is not None and set(lut["genes"].iat[j]) != set(lut["genes"].iat[i]):
            loose[loose_key] = None  # ambiguous without punctuation: never used

    def lookup(name: str) -> int | None:
        key = normalize_feature_name(name)
        stem = _CLONE_SUFFIX.sub("", key)
        for candidate in (exact.get(key), exact.get(stem) if stem else None):
            if candidate is not None:
                return candidate
        return loose.get(_LOOSE_DOT.sub("", key)) if key else None

    records = []
    for name in protein_names:
        hit = lookup(name)
        parts = _PARENTHESISED.match(_strip_decorations(name))
        if hit is None and parts:
            hit = lookup(parts["inner"])
            hit = lookup(parts["outer"]) if hit is None else hit
        if hit is None:
            records.append((name, np.nan, (), "unmatched"))
            continue
        row = lut.iloc[hit]
        status = "ignored" if row["ignored"] else "linked"
        records.append((name, row["protein"], tuple(row["genes"]), status))
    return pd.DataFrame.from_records(
        records, columns=["protein", "table_protein", "genes", "status"]
    )
