"""Fast readers: Arrow parses the bulk of an import (tokens and values) straight into columns.

A Neuronpedia activation file or a SAEDashboard batch file is mostly token strings and values:
millions of them per file. Parsing them into Python lists, checking every item and looking every
token up again costs more than the database's work. Here Arrow's JSON reader (C++, off the GIL)
parses them into typed arrays, the checks run over whole arrays, each distinct token is looked up
once, and the writer encodes the batch in one numpy pass (:class:`ActivationColumns`).

These readers only take input they can check as strictly as the validating readers
(:mod:`interpedia.ingest.npexport`, :mod:`interpedia.ingest.saedashboard`): anything else (a type
Arrow would not parse, a NaN, a null, examples of one feature split across the file, a truncated
file...) raises :class:`NotFast`, and the caller reads the same file again with the validating reader,
whose error names the file, the line, the feature and the field. Rows with rare fields (DFA, loss
values, attention patterns, logit contributions, data source) go through the validating code one by
one, so both readers produce the same records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from isal import igzip_threaded

from interpedia.ingest.validate import BadInput, as_float, as_float_list, as_int_list, as_str_list
from interpedia.store.records import ActivationColumns, FeatureRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

_MAX_TOKEN_CHARS = 100_000  # as validate.as_str_list
_BLOCK_BYTES = 16 << 20  # Arrow parses blocks of whole lines; a line longer than this goes the slow way

_F64 = pa.float64()
_I64 = pa.int64()
_STR = pa.string()
_F64_LIST = pa.list_(_F64)
_I64_LIST = pa.list_(_I64)
_STR_LIST = pa.list_(_STR)

NP_ACTIVATION_SCHEMA = pa.schema(
    [
        ("index", _STR),
        ("modelId", _STR),
        ("layer", _STR),
        ("tokens", _STR_LIST),
        ("values", _F64_LIST),
        ("binMin", _F64),
        ("binMax", _F64),
        ("binContains", _F64),
        ("qualifyingTokenIndex", _I64),
        ("dfaValues", _F64_LIST),
        ("dfaTargetIndex", _I64),
        ("dfaMaxValue", _F64),
        ("lossValues", _F64_LIST),
        ("zIndices", pa.list_(_I64_LIST)),
        ("zKIndices", _I64_LIST),
        ("zQIndices", _I64_LIST),
        ("zValues", _F64_LIST),
        ("logitContributions", _STR),
        ("dataSource", _STR),
        ("dataIndex", _STR),
    ]
)
# Columns whose presence in a row sends that row through the validating code.
_NP_RARE_LISTS = ("dfaValues", "lossValues", "zKIndices", "zQIndices", "zValues")
_NP_RARE_SCALARS = ("dfaTargetIndex", "dfaMaxValue", "logitContributions", "dataSource", "dataIndex")

SD_FLOAT_LISTS = (
    "neuron_alignment_values",
    "neuron_alignment_l1",
    "correlated_neurons_l1",
    "correlated_neurons_pearson",
    "correlated_features_l1",
    "correlated_features_pearson",
    "neg_values",
    "pos_values",
    "freq_hist_data_bar_values",
    "freq_hist_data_bar_heights",
    "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values",
    "decoder_weights_dist",
)
SD_INT_LISTS = ("neuron_alignment_indices", "correlated_neurons_indices", "correlated_features_indices")
_SD_ACTIVATION = pa.struct(
    [
        ("tokens", _STR_LIST),
        ("values", _F64_LIST),
        ("bin_min", _F64),
        ("bin_max", _F64),
        ("bin_contains", _F64),
        ("qualifying_token_index", _I64),
        ("dfa_values", _F64_LIST),
        ("dfa_targetIndex", _I64),
        ("dfa_maxValue", _F64),
        ("loss_values", _F64_LIST),
        ("logit_contributions", _STR),
    ]
)
_SD_FEATURE = pa.struct(
    [
        ("feature_index", _I64),
        *((k, _F64_LIST) for k in SD_FLOAT_LISTS),
        *((k, _I64_LIST) for k in SD_INT_LISTS),
        ("pos_str", _STR_LIST),
        ("neg_str", _STR_LIST),
        ("frac_nonzero", _F64),
        ("vector", _F64_LIST),
        ("activations", pa.list_(_SD_ACTIVATION)),
    ]
)
SD_SCHEMA = pa.schema([("features", pa.list_(_SD_FEATURE))])


class NotFast(Exception):
    """Input the fast reader does not take; read it with the validating reader instead."""


def _parse_options(schema: pa.Schema) -> pj.ParseOptions:
    return pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")


def _require(condition: bool, why: str) -> None:
    if not condition:
        raise NotFast(why)


def _no_nulls(array: pa.Array | pa.ChunkedArray, what: str) -> None:
    _require(array.null_count == 0, f"null in {what}")


def _finite(array: pa.Array, what: str) -> None:
    """No NaN or infinity among the non-null values."""
    if len(array) and array.null_count < len(array):
        _require(pc.all(pc.is_finite(array), skip_nulls=True).as_py() is not False, f"non-finite {what}")


def _list_lengths(array: pa.ListArray) -> npt.NDArray[np.int64]:
    """Length of each list (0 for a null one)."""
    lengths = pc.fill_null(pc.list_value_length(array), 0)
    return lengths.to_numpy(zero_copy_only=False).astype(np.int64)  # type: ignore[no-any-return]


def _examples(
    tokens: pa.ListArray, values: pa.ListArray
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], list[str], npt.NDArray[np.float64]]:
    """Offsets, token codes, distinct tokens and values of examples, checked as activation_record checks them."""
    _no_nulls(tokens, "tokens")
    _no_nulls(values, "values")
    lens = _list_lengths(tokens)
    _require(bool((lens == _list_lengths(values)).all()), "tokens and values of different lengths")
    _require(bool((lens > 0).all()), "an empty example")
    flat_tokens = tokens.flatten()
    flat_values = values.flatten()
    _no_nulls(flat_tokens, "tokens")
    _no_nulls(flat_values, "values")
    vals = flat_values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    _require(bool(np.isfinite(vals).all()), "non-finite value")
    encoded = flat_tokens.dictionary_encode()
    dictionary = encoded.dictionary
    if len(dictionary):
        _require(pc.max(pc.utf8_length(dictionary)).as_py() <= _MAX_TOKEN_CHARS, "a token too long")
    strings: list[str] = dictionary.to_pylist()
    if pc.any(pc.match_substring(dictionary, "\x00")).as_py():
        # NUL becomes a space, as validate.loads does (Postgres text cannot hold it).
        strings = [s.replace("\x00", " ") for s in strings]
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return offsets, codes, strings, vals


def _floats(array: pa.Array, what: str) -> list[float | None]:
    _finite(array, what)
    return array.to_pylist()  # type: ignore[no-any-return]


# --- the Neuronpedia export layout -------------------------------------------------------------------------


def np_activation_batches(
    file: Path,
    model_id: str,
    source_id: str,
    size: int,
    seen: set[int],
    rare_row: Callable[[dict[str, Any]], dict[str, Any]],
) -> Iterator[tuple[list[FeatureRecord], ActivationColumns]]:
    """Batches of an ``activations/batch-N.jsonl[.gz]`` file, cut as ``npactivations._activation_batches`` cuts them.

    A batch closes at the first change of feature after ``size`` lines. ``rare_row`` turns a row
    with rare fields into the fields of its ``ActivationRecord`` (bins, token index, extras) with the
    validating code. Raises :class:`NotFast` for anything the validating reader should look at.
    """
    pending: list[pa.Table] = []
    pending_idx: list[npt.NDArray[np.int64]] = []
    n_pending = 0
    for table, idx in _np_tables(file, model_id, source_id):
        pending.append(table)
        pending_idx.append(idx)
        n_pending += len(idx)
        while n_pending > size:
            joined = np.concatenate(pending_idx)
            # The first line at or after ``size`` whose feature differs from the line before closes the batch.
            cuts = np.flatnonzero(joined[size:] != joined[size - 1 : -1])
            if not len(cuts):
                break
            cut = size + int(cuts[0])
            whole = pa.concat_tables(pending)
            yield _np_batch(whole.slice(0, cut), joined[:cut], seen, rare_row)
            pending, pending_idx = [whole.slice(cut)], [joined[cut:]]
            n_pending = len(joined) - cut
    if n_pending:
        yield _np_batch(pa.concat_tables(pending), np.concatenate(pending_idx), seen, rare_row)


def _open_stream(file: Path) -> Any:
    """The file's bytes; a .gz file is decompressed by ISA-L in a thread of its own, ahead of Arrow's parse.

    ISA-L inflates about twice as fast as zlib, and in its own thread (without the GIL) the
    decompression overlaps with parsing instead of preceding it.
    """
    if file.suffix == ".gz":
        return igzip_threaded.open(file, "rb", threads=1, block_size=4 << 20)
    return pa.input_stream(str(file))


def _np_tables(file: Path, model_id: str, source_id: str) -> Iterator[tuple[pa.Table, npt.NDArray[np.int64]]]:
    """The file's rows in tables of Arrow's blocks, with their feature indexes; owner columns checked."""
    try:
        stream = _open_stream(file)
        with (
            stream,
            pj.open_json(
                stream,
                # Parsed in this (reader) thread: Arrow's own pool cost more CPU than it saved here,
                # where the decompression, the encoding and the database already share the cores.
                read_options=pj.ReadOptions(block_size=_BLOCK_BYTES, use_threads=False),
                parse_options=_parse_options(NP_ACTIVATION_SCHEMA),
            ) as reader,
        ):
            for batch in reader:
                table = pa.Table.from_batches([batch])
                if not len(table):
                    continue
                yield table, _np_owner(table, model_id, source_id)
    except (pa.ArrowException, OSError, ValueError, EOFError) as exc:
        raise NotFast(f"{file.name}: {exc}") from None


def _np_owner(table: pa.Table, model_id: str, source_id: str) -> npt.NDArray[np.int64]:
    """Feature indexes (non-negative decimal strings), and each row's model and source the directory's."""
    index = table.column("index")
    _no_nulls(index, "index")
    _require(pc.all(pc.match_substring_regex(index, r"^[0-9]{1,18}$")).as_py(), "an index that is not a plain number")
    for name, want in (("modelId", model_id), ("layer", source_id)):
        column = table.column(name)
        # A missing key is fine (the directory says which); an explicit null or another id is for the slow path.
        if column.null_count:
            _require(column.null_count == len(column), f"null {name}")
        else:
            _require(pc.all(pc.equal(column, want)).as_py(), f"another {name}")
    return pc.cast(index, _I64).to_numpy().astype(np.int64)  # type: ignore[no-any-return]


def _np_batch(
    table: pa.Table, idx: npt.NDArray[np.int64], seen: set[int], rare_row: Callable[[dict[str, Any]], dict[str, Any]]
) -> tuple[list[FeatureRecord], ActivationColumns]:
    starts = np.flatnonzero(np.concatenate(([True], idx[1:] != idx[:-1])))
    order = idx[starts].tolist()
    _require(len(set(order)) == len(order) and not seen.intersection(order), "a feature's examples not together")
    offsets, codes, strings, values = _examples(
        table.column("tokens").combine_chunks(), table.column("values").combine_chunks()
    )
    bin_min = _floats(table.column("binMin").combine_chunks(), "binMin")
    bin_max = _floats(table.column("binMax").combine_chunks(), "binMax")
    bin_contains = _floats(table.column("binContains").combine_chunks(), "binContains")
    qualifying = table.column("qualifyingTokenIndex").to_pylist()
    extras: list[dict[str, Any] | None] = [None] * len(idx)
    rare = np.zeros(len(idx), dtype=bool)
    for name in _NP_RARE_LISTS:
        rare |= _list_lengths(table.column(name).combine_chunks()) > 0
    for name in _NP_RARE_SCALARS:
        rare |= table.column(name).is_valid().to_numpy(zero_copy_only=False)
    # zIndices = [zKIndices, zQIndices]: a row with any index in it, or of another shape, is rare.
    z = table.column("zIndices").combine_chunks()
    rare |= ~np.isin(_list_lengths(z), (0, 2))
    inner = pc.list_value_length(pc.list_flatten(z))
    if len(inner):
        per_row = np.bincount(
            _list_parents(z), weights=pc.fill_null(inner, 1).to_numpy(zero_copy_only=False), minlength=len(idx)
        )
        rare |= per_row > 0
    try:
        for row in np.flatnonzero(rare).tolist():
            fields = rare_row(table.slice(row, 1).to_pylist()[0])
            bin_min[row], bin_max[row] = fields["bin_min"], fields["bin_max"]
            bin_contains[row], qualifying[row] = fields["bin_contains"], fields["qualifying_token_index"]
            extras[row] = fields["extras"]
    except BadInput as exc:
        raise NotFast(str(exc)) from None
    seen.update(order)
    columns = ActivationColumns(
        feature_index=idx,
        offsets=offsets,
        token_codes=codes,
        token_strings=strings,
        values=values,
        bin_min=bin_min,
        bin_max=bin_max,
        bin_contains=bin_contains,
        qualifying_token_index=qualifying,
        extras=extras,
    )
    return [FeatureRecord(index=i, activations=[]) for i in order], columns


def _list_parents(array: pa.ListArray) -> npt.NDArray[np.int64]:
    """For each item of the flattened list array, the row it came from."""
    return pc.list_parent_indices(array).to_numpy(zero_copy_only=False).astype(np.int64)  # type: ignore[no-any-return]


# --- SAEDashboard batch files ------------------------------------------------------------------------------


def saedashboard_batch(
    data: bytes, rare_activation: Callable[[dict[str, Any], int], dict[str, Any]]
) -> tuple[list[FeatureRecord], ActivationColumns]:
    """The features of one SAEDashboard ``batch-N.json`` (its bytes) as records plus their examples in columns.

    ``rare_activation(activation, position)`` turns an example with DFA values, loss values or logit
    contributions into its record's fields with the validating code. Raises :class:`NotFast` for
    anything the validating reader should look at.
    """
    _require(b"\\u0000" not in data, "NUL characters (the validating reader turns them into spaces)")
    try:
        # One document, maybe pretty-printed: a single block of the whole file.
        options = pj.ParseOptions(
            explicit_schema=SD_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=True
        )
        table = pj.read_json(
            pa.py_buffer(data), read_options=pj.ReadOptions(block_size=len(data) + 1), parse_options=options
        )
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise NotFast(str(exc)) from None
    _require(len(table) == 1, "not one document")
    features = table.column("features").combine_chunks()
    _no_nulls(features, "features")
    feats = features.flatten()
    _no_nulls(feats, "features[]")
    index_col = feats.field("feature_index")
    _no_nulls(index_col, "feature_index")
    indexes = index_col.to_numpy(zero_copy_only=False).astype(np.int64)
    _require(bool((indexes >= 0).all()), "a negative feature index")
    stats = _saedashboard_stats(feats)
    acts_list = feats.field("activations")
    _no_nulls(acts_list, "activations")
    per_feature = _list_lengths(acts_list)
    acts = acts_list.flatten()
    _no_nulls(acts, "activations[]")
    offsets, codes, strings, values = _examples(acts.field("tokens"), acts.field("values"))
    bin_min = _floats(acts.field("bin_min"), "bin_min")
    bin_max = _floats(acts.field("bin_max"), "bin_max")
    bin_contains = _floats(acts.field("bin_contains"), "bin_contains")
    qualifying = acts.field("qualifying_token_index").to_pylist()
    feature_of = np.repeat(indexes, per_feature)
    extras: list[dict[str, Any] | None] = [None] * len(acts)
    rare = (_list_lengths(acts.field("dfa_values")) > 0) | (_list_lengths(acts.field("loss_values")) > 0)
    rare |= pc.fill_null(pc.not_equal(acts.field("logit_contributions"), ""), False).to_numpy(zero_copy_only=False)
    if rare.any():
        position = np.arange(len(acts)) - np.repeat(np.cumsum(per_feature) - per_feature, per_feature)
        try:
            for row in np.flatnonzero(rare).tolist():
                fields = rare_activation(acts.slice(row, 1).to_pylist()[0], int(position[row]))
                bin_min[row], bin_max[row] = fields["bin_min"], fields["bin_max"]
                bin_contains[row], qualifying[row] = fields["bin_contains"], fields["qualifying_token_index"]
                extras[row] = fields["extras"]
        except BadInput as exc:
            raise NotFast(str(exc)) from None
    columns = ActivationColumns(
        feature_index=feature_of,
        offsets=offsets,
        token_codes=codes,
        token_strings=strings,
        values=values,
        bin_min=bin_min,
        bin_max=bin_max,
        bin_contains=bin_contains,
        qualifying_token_index=qualifying,
        extras=extras,
    )
    # Neuronpedia's maxActApprox: the largest value over the feature's examples (0 marks a dead feature).
    max_act = np.zeros(len(indexes), dtype=np.float64)
    has_examples = per_feature > 0
    if has_examples.any():
        first = np.cumsum(per_feature) - per_feature
        max_act[has_examples] = np.maximum.reduceat(columns.max_values(), first[has_examples])
    records = []
    for n, index in enumerate(indexes.tolist()):
        stats[n]["max_act_approx"] = float(max_act[n])
        records.append(FeatureRecord(index=index, stats=stats[n], activations=[]))
    return records, columns


def _saedashboard_stats(feats: pa.StructArray) -> list[dict[str, Any]]:
    """Each feature's statistics, checked by the validating code (they are small)."""
    n = len(feats)
    stats: list[dict[str, Any]] = [{} for _ in range(n)]
    checks: list[tuple[str, Callable[[Any, str], Any]]] = [
        *((k, as_float_list) for k in SD_FLOAT_LISTS),
        *((k, as_int_list) for k in SD_INT_LISTS),
        ("pos_str", as_str_list),
        ("neg_str", as_str_list),
        ("frac_nonzero", lambda v, f: as_float(v, f, allow_none=True)),
    ]
    try:
        for key, check in checks:
            column = feats.field(key)
            if column.null_count == n:
                continue  # absent from every feature (Arrow cannot tell absent from null; see below)
            _no_nulls(column, key)  # some null, some not: let the validating reader decide
            for stat, value in zip(stats, column.to_pylist(), strict=True):
                stat[key] = check(value, key)
        for stat, value in zip(stats, feats.field("vector").to_pylist(), strict=True):
            vector = as_float_list(value, "vector")
            if vector:
                stat["vector"] = vector
    except BadInput as exc:
        raise NotFast(str(exc)) from None
    return stats
