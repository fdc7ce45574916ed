"""Column-at-a-time validation of typed request tables (Parquet, Arrow).

Validating a million rows with 384-d embeddings record by record costs more than storing them, so
typed tables are checked with Arrow compute kernels instead. The rules are those of
:class:`modelwarden.records.RequestRecord` (a test feeds the same bad records through both paths
and expects the same fields rejected). Tables whose types are not the native ones (timestamps as
strings, feedback as floats, ...) go through the record-by-record path instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwarden.ingest.rejections import Rejection, raw_text
from modelwarden.records import (
    CONTROL_RE,
    CONTROL_RE2,
    FINITE_REASON,
    FLOAT32_LIMIT,
    FLOAT32_REASON,
    INLINE_EMBEDDER,
    MAX_EMBEDDING_DIM,
    MAX_FEEDBACK_SCORE,
    MAX_TOKENS,
    MIN_FEEDBACK_SCORE,
    ROUTES,
    TIMESTAMP_RANGE_REASON,
    UTF8_BYTES_REASON,
    FieldProblem,
    RequestRecord,
    control_reason,
    text_rules,
)
from modelwarden.safety.checker import SafetyChecker
from modelwarden.store.schema import SCHEMAS

# (min length, max length or None) of each text field, from the record model's annotations.
_TEXT = text_rules(RequestRecord)
REQUIRED_STRINGS = {n: (r.min_length, r.max_length) for n, r in _TEXT.items() if r.required}
OPTIONAL_STRINGS = {n: (r.min_length, r.max_length) for n, r in _TEXT.items() if not r.required}
EMBEDDINGS = {"prompt_embedding": "prompt", "response_embedding": "response"}
# The range of Python's datetime, which the record path and the store's readers share.
_FIRST = datetime(1, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _is_float_list(t: pa.DataType) -> bool:
    if pa.types.is_null(t):
        return True
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        return False
    return pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)


def is_native(schema: pa.Schema) -> bool:
    """True when every known column has the type the columnar path expects."""
    names = set(schema.names)
    if "timestamp" in names:
        t = schema.field("timestamp").type
        if not (pa.types.is_timestamp(t) and t.tz):
            return False
    checks: dict[str, Any] = {n: _is_string for n in (*REQUIRED_STRINGS, *OPTIONAL_STRINGS)}
    checks["latency_ms"] = lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)
    checks["human_feedback_score"] = lambda t: pa.types.is_integer(t) or pa.types.is_null(t)
    checks["contains_safety_keyword"] = lambda t: pa.types.is_boolean(t) or pa.types.is_null(t)
    checks["prompt_tokens"] = lambda t: pa.types.is_integer(t) or pa.types.is_null(t)
    checks["completion_tokens"] = checks["prompt_tokens"]
    for name in EMBEDDINGS:
        checks[name] = _is_float_list
    return all(check(schema.field(n).type) for n, check in checks.items() if n in names)


@dataclass
class ColumnarResult:
    table: pa.Table
    rejections: list[Any] = field(default_factory=list)
    # (kind, embedder) -> (request ids, vectors, the requests' timestamps)
    embeddings: dict[tuple[str, str], tuple[pa.Array, np.ndarray, pa.Array]] = field(
        default_factory=dict
    )


class _Problems:
    def __init__(self, n: int) -> None:
        self.n = n
        self.by_row: dict[int, list[FieldProblem]] = {}

    def flag(self, mask: pa.Array | pa.ChunkedArray, field_name: str, reason: str) -> None:
        arr = pc.fill_null(mask, False)
        idx = np.flatnonzero(np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool))
        for i in idx:
            self.by_row.setdefault(int(i), []).append(FieldProblem(field=field_name, reason=reason))

    def flag_rows(self, rows: np.ndarray, field_name: str, reason: str) -> None:
        for i in rows:
            self.by_row.setdefault(int(i), []).append(FieldProblem(field=field_name, reason=reason))

    def flag_all(self, field_name: str, reason: str) -> None:
        self.flag_rows(np.arange(self.n), field_name, reason)


def _check_string(
    col: Any, name: str, lo: int, hi: int | None, required: bool, probs: _Problems
) -> None:
    if required:
        probs.flag(pc.is_null(col), name, "required field is missing")
    if pa.types.is_null(col.type):
        return
    length = pc.utf8_length(col)
    if lo > 0:
        probs.flag(pc.less(length, lo), name, f"string should have at least {lo} character")
    if hi is not None:
        probs.flag(pc.greater(length, hi), name, f"string should have at most {hi} characters")
    control = pc.fill_null(pc.match_substring_regex(col, CONTROL_RE2), False)
    rows = np.flatnonzero(np.asarray(control.to_numpy(zero_copy_only=False), dtype=bool))
    for i in rows:  # few rows: the reason names the character, as the record path does
        found = CONTROL_RE.search(col[int(i)].as_py())
        assert found is not None
        probs.flag_rows(np.array([i]), name, control_reason(found.group()))


def validate_requests(
    table: pa.Table, known_dims: dict[str, int], source: str, row_offset: int = 0
) -> ColumnarResult:
    n = table.num_rows
    names = set(table.column_names)
    probs = _Problems(n)
    table = _repair_utf8(table, probs)
    for name, (lo, hi) in REQUIRED_STRINGS.items():
        if name not in names:
            probs.flag_all(name, "required field is missing")
        else:
            _check_string(table.column(name), name, lo, hi, True, probs)
    for name, (lo, hi) in OPTIONAL_STRINGS.items():
        if name in names:
            _check_string(table.column(name), name, lo, hi, False, probs)
    for req in ("timestamp", "latency_ms"):
        if req not in names:
            probs.flag_all(req, "required field is missing")
        else:
            probs.flag(pc.is_null(table.column(req)), req, "required field is missing")
    if "timestamp" in names:
        _check_timestamp_range(table.column("timestamp"), probs)
    if "latency_ms" in names:
        lat = pc.cast(table.column("latency_ms"), pa.float64(), safe=False)
        probs.flag(
            pc.invert(pc.is_finite(lat)),
            "latency_ms",
            FINITE_REASON,
        )
        probs.flag(pc.less(lat, 0), "latency_ms", "input should be greater than or equal to 0")
    if "human_feedback_score" in names and not pa.types.is_null(table["human_feedback_score"].type):
        fb = table.column("human_feedback_score")
        probs.flag(
            pc.or_(pc.less(fb, MIN_FEEDBACK_SCORE), pc.greater(fb, MAX_FEEDBACK_SCORE)),
            "human_feedback_score",
            f"input should be an integer from {MIN_FEEDBACK_SCORE} to {MAX_FEEDBACK_SCORE}",
        )
    for tok in ("prompt_tokens", "completion_tokens"):
        if tok in names and not pa.types.is_null(table[tok].type):
            probs.flag(
                pc.less(table.column(tok), 0), tok, "input should be greater than or equal to 0"
            )
            probs.flag(
                pc.greater(table.column(tok), MAX_TOKENS),
                tok,
                f"input should be less than or equal to {MAX_TOKENS}",
            )
    if "route" in names and not pa.types.is_null(table["route"].type):
        route = table.column("route")
        bad = pc.and_(
            pc.invert(pc.is_null(route)), pc.invert(pc.is_in(route, value_set=pa.array(ROUTES)))
        )
        allowed = ", ".join(repr(r) for r in ROUTES[:-1]) + f" or {ROUTES[-1]!r}"
        probs.flag(bad, "route", f"input should be {allowed}")
    response_missing = (
        pc.is_null(table.column("generated_response"))
        if "generated_response" in names
        else pa.array(np.ones(n, dtype=bool))
    )
    if "error" in names and not pa.types.is_null(table["error"].type):
        has_error = pc.greater(pc.utf8_length(pc.fill_null(table.column("error"), "")), 0)
    else:
        has_error = pa.array(np.zeros(n, dtype=bool))
    probs.flag(
        pc.and_(response_missing, pc.invert(has_error)),
        "generated_response",
        "required unless 'error' is set",
    )

    embedders = (
        pc.fill_null(table.column("embedding_model"), INLINE_EMBEDDER)
        if "embedding_model" in names and not pa.types.is_null(table["embedding_model"].type)
        else pa.array([INLINE_EMBEDDER] * n)
        if n and any(e in names for e in EMBEDDINGS)
        else None
    )
    lengths_of: dict[str, np.ndarray] = {}
    for col_name in EMBEDDINGS:
        if col_name not in names or pa.types.is_null(table[col_name].type):
            continue
        col = table.column(col_name).combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(col), -1).to_numpy(zero_copy_only=False)
        lengths_of[col_name] = lengths
        present = lengths >= 0
        probs.flag_rows(
            np.flatnonzero(present & ((lengths < 1) | (lengths > MAX_EMBEDDING_DIM))),
            col_name,
            f"must have 1 to {MAX_EMBEDDING_DIM} values",
        )
        flat = pc.list_flatten(col)
        parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False)
        values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64)
        finite = np.isfinite(values)
        bad_rows = np.unique(parents[~finite])
        probs.flag_rows(bad_rows, col_name, FINITE_REASON)
        # The store keeps float32 vectors; a finite float64 beyond their range would become inf.
        with np.errstate(invalid="ignore"):
            huge = finite & (np.abs(values) >= FLOAT32_LIMIT)
        probs.flag_rows(
            np.setdiff1d(np.unique(parents[huge]), bad_rows),
            col_name,
            FLOAT32_REASON,
        )
    if lengths_of:
        assert embedders is not None
        _check_dims(
            lengths_of,
            np.asarray(embedders.to_numpy(zero_copy_only=False)),
            dict(known_dims),
            probs,
        )

    bad = np.zeros(n, dtype=bool)
    if probs.by_row:
        bad[np.fromiter(probs.by_row.keys(), dtype=np.int64)] = True
    rejections = []
    for i in sorted(probs.by_row):
        row = _row(table, i)
        key = row.get("request_id")
        rejections.append(
            Rejection(
                source,
                f"row {row_offset + i + 1}",
                str(key) if key is not None else None,
                probs.by_row[i],
                raw_text(_jsonable(row)),
            )
        )
    good = table.filter(pa.array(~bad)) if probs.by_row else table

    result = ColumnarResult(table=_to_store_schema(good, source), rejections=rejections)
    if good.num_rows and embedders is not None:
        good_emb = np.asarray(embedders.to_numpy(zero_copy_only=False))[~bad]
        ids = good.column("request_id").combine_chunks()
        stamps = result.table.column("timestamp").combine_chunks()
        for col_name, kind in EMBEDDINGS.items():
            if col_name not in names or pa.types.is_null(good[col_name].type):
                continue
            col = good.column(col_name).combine_chunks()
            present = np.asarray(pc.invert(pc.is_null(col)).to_numpy(zero_copy_only=False), bool)
            for name in np.unique(good_emb[present]):
                rows = np.flatnonzero(present & (good_emb == name))
                sub = col.take(pa.array(rows))
                vecs = np.asarray(
                    pc.list_flatten(sub).to_numpy(zero_copy_only=False), dtype=np.float32
                ).reshape(len(rows), -1)
                take = pa.array(rows)
                result.embeddings[(kind, str(name))] = (ids.take(take), vecs, stamps.take(take))
    return result


def _check_dims(
    lengths_of: dict[str, np.ndarray], emb: np.ndarray, dims: dict[str, int], probs: _Problems
) -> None:
    """One dimension per embedder, as the record-by-record path decides it.

    An embedder new to the store takes its dimension from the first row, in row order, that has
    no other problem, looking at the prompt embedding before the response embedding.
    """
    n = len(emb)
    clean = np.ones(n, dtype=bool)
    if probs.by_row:
        clean[np.fromiter(probs.by_row.keys(), dtype=np.int64)] = False
    cols = [c for c in EMBEDDINGS if c in lengths_of]
    for name in np.unique(emb):
        rows = emb == name
        expected = dims.get(str(name))
        if expected is None:
            for i in np.flatnonzero(rows & clean):
                first = next((int(lengths_of[c][i]) for c in cols if lengths_of[c][i] >= 1), None)
                if first is not None:
                    expected = first
                    break
        if expected is None:
            continue
        for c in cols:
            lengths = lengths_of[c]
            # Like the record path, a row rejected for another reason is not also judged here.
            for i in np.flatnonzero(rows & clean & (lengths >= 1) & (lengths != expected)):
                probs.flag_rows(
                    np.array([i]),
                    c,
                    f"has {lengths[i]} dimensions; embedder {str(name)!r} has {expected}",
                )


def _repair_utf8(table: pa.Table, probs: _Problems) -> pa.Table:
    """Flag string cells whose bytes are not UTF-8, and make them readable for what follows.

    Parquet can carry such bytes (the record path's equivalent is a lone surrogate). The cells
    are rejected with their field; the table goes on with them decoded leniently, so that the
    raw copy kept in the rejected store and the other checks can read the row.
    """
    for name in (*REQUIRED_STRINGS, *OPTIONAL_STRINGS):
        if name not in table.column_names or pa.types.is_null(table[name].type):
            continue
        col = table.column(name).combine_chunks()
        try:
            col.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        binary = col.view(pa.large_binary() if pa.types.is_large_string(col.type) else pa.binary())
        values: list[str | None] = []
        bad: list[int] = []
        for i, b in enumerate(binary.to_pylist()):
            if b is None:
                values.append(None)
                continue
            try:
                values.append(b.decode("utf-8"))
            except UnicodeDecodeError:
                bad.append(i)
                values.append(b.decode("utf-8", "replace"))
        probs.flag_rows(np.asarray(bad, dtype=np.int64), name, UTF8_BYTES_REASON)
        idx = table.schema.get_field_index(name)
        table = table.set_column(idx, name, pa.array(values, col.type))
    return table


def _check_timestamp_range(col: pa.ChunkedArray, probs: _Problems) -> None:
    unit = col.type.unit
    if unit == "ns":
        return  # 64-bit nanoseconds span 1677-2262, inside the range
    lo, hi = (_in_unit(t - _EPOCH, unit) for t in (_FIRST, _LAST))
    ints = pc.cast(col, pa.int64())
    probs.flag(pc.or_(pc.less(ints, lo), pc.greater(ints, hi)), "timestamp", TIMESTAMP_RANGE_REASON)


def _in_unit(delta: timedelta, unit: str) -> int:
    per = _PER_SECOND[unit]
    return (delta.days * 86_400 + delta.seconds) * per + delta.microseconds * per // 1_000_000


def _row(table: pa.Table, i: int) -> dict[str, Any]:
    """Row ``i`` as Python values; a value Python cannot hold is shown as Arrow prints it."""
    one = table.slice(i, 1)
    try:
        return one.to_pylist()[0]
    except (ValueError, OverflowError, pa.ArrowException):
        pass
    row: dict[str, Any] = {}
    for name in one.column_names:
        col = one.column(name)
        try:
            row[name] = col.to_pylist()[0]
        except (ValueError, OverflowError, pa.ArrowException):
            if pa.types.is_timestamp(col.type):
                row[name] = f"{pc.cast(col, pa.int64())[0].as_py()} {col.type.unit} since 1970"
            else:
                row[name] = str(col[0])
    return row


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=str))


def _to_store_schema(table: pa.Table, source: str) -> pa.Table:
    schema = SCHEMAS["requests"]
    n = table.num_rows
    cols = []
    for f in schema:
        if f.name == "source":
            cols.append(pa.repeat(pa.scalar(source, pa.string()), n))
        elif f.name == "safety_computed":
            flags = (
                table.column("contains_safety_keyword")
                if "contains_safety_keyword" in table.column_names
                else pa.nulls(n, pa.bool_())
            )
            cols.append(pc.is_null(flags))
        elif f.name in table.column_names and not pa.types.is_null(table[f.name].type):
            # Integers beyond 2**53 are rounded into a float column, as the record path does.
            cols.append(
                pc.cast(table.column(f.name), f.type, safe=not pa.types.is_floating(f.type))
            )
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def fill_safety(table: pa.Table, checker: SafetyChecker) -> pa.Table:
    """Compute ``contains_safety_keyword`` where it is null, from the response text."""
    flags = table.column("contains_safety_keyword").to_pylist()
    responses = table.column("generated_response").to_pylist()
    filled = [checker.flags(r) if f is None else f for f, r in zip(flags, responses, strict=True)]
    idx = table.schema.get_field_index("contains_safety_keyword")
    return table.set_column(idx, "contains_safety_keyword", pa.array(filled, pa.bool_()))
