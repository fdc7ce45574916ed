"""Readers: JSONL (``-`` for stdin, ``.gz`` too), CSV and Parquet, chosen by extension.

A reader yields chunks of ``(location, raw)`` pairs. ``raw`` is a dict, or a :class:`BadLine`
when the line itself could not be read (not UTF-8, malformed JSON), so the line is kept with its
reason instead of stopping the file. Parquet files whose column types are the native ones take
the columnar path in :mod:`modelwarden.ingest.columnar` instead.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from modelwarden.errors import InputError
from modelwarden.records import (
    FLOAT_COLUMNS,
    INT_COLUMNS,
    TIMESTAMP_RANGE_REASON,
    UTF8_BYTES_REASON,
)

CHUNK = 20_000
JSONL_EXT = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz")
CSV_EXT = (".csv", ".csv.gz")
PARQUET_EXT = (".parquet", ".pq")
EMBEDDING_COLUMNS = ("prompt_embedding", "response_embedding")


@dataclass
class BadLine:
    reason: str
    text: str
    field: str = "(line)"
    key: str | None = None


Raw = dict[str, Any] | BadLine
Chunk = list[tuple[str, Raw]]


def check_readable(path: str) -> None:
    if path == "-":
        return
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file", field="path")
    if p.is_dir():
        raise InputError(f"{path}: is a directory, not a file", field="path")


def detect_format(path: str) -> str:
    if path == "-":
        return "jsonl"
    low = path.lower()
    if low.endswith(JSONL_EXT):
        return "jsonl"
    if low.endswith(CSV_EXT):
        return "csv"
    if low.endswith(PARQUET_EXT):
        return "parquet"
    raise InputError(
        f"{path}: unknown file type; use .jsonl, .csv or .parquet (or - for JSONL on stdin)",
        field="path",
    )


def _open_binary(path: str) -> IO[bytes] | gzip.GzipFile:
    if path == "-":
        return sys.stdin.buffer
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file", field="path")
    if p.is_dir():
        raise InputError(f"{path}: is a directory, not a file", field="path")
    try:
        if path.lower().endswith(".gz"):
            return gzip.open(p, "rb")
        return open(p, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})", field="path") from exc


def _utf8_problem(exc: UnicodeDecodeError) -> str:
    bad = exc.object[exc.start : exc.start + 1]
    return f"not valid UTF-8 (byte 0x{bad.hex()} at position {exc.start})"


def read_jsonl(path: str) -> Iterator[Chunk]:
    fh = _open_binary(path)
    chunk: Chunk = []
    try:
        for lineno, line in enumerate(fh, start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                chunk.append((f"line {lineno}", BadLine(_utf8_problem(exc), repr(line[:200]))))
                continue
            except OSError as exc:  # a truncated or corrupt .gz stream
                raise InputError(f"{path}: cannot read ({exc})", field="path") from exc
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                reason = f"malformed JSON ({exc.msg} at column {exc.colno})"
                chunk.append((f"line {lineno}", BadLine(reason, text[:2000])))
                continue
            if not isinstance(obj, dict):
                chunk.append(
                    (
                        f"line {lineno}",
                        BadLine("a record must be a JSON object", text[:2000], field="(record)"),
                    )
                )
                continue
            chunk.append((f"line {lineno}", obj))
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot read ({exc})", field="path") from exc
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
    if chunk:
        yield chunk


BOOLEAN_COLUMNS = ("contains_safety_keyword", "confirmed")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _csv_number(value: str, integer: bool) -> Any:
    """A numeric cell parsed by its column's type; a cell that is no number stays text, so that
    validation names the field and the reason."""
    text = value.strip()
    try:
        return int(text) if integer else float(text)
    except ValueError:
        pass
    if integer:
        try:
            return float(text)  # "4.0" is 4; "4.5" is refused by validation as not an integer
        except ValueError:
            pass
    return value


def _csv_value(key: str, value: str | None) -> Any:
    if value is None or value == "":
        return None
    if key in INT_COLUMNS or key in FLOAT_COLUMNS:
        return _csv_number(value, key in INT_COLUMNS)
    if key in BOOLEAN_COLUMNS:
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return value  # validation names the field and the reason
    if key in EMBEDDING_COLUMNS:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value  # validation names the field and the reason
    return value


def read_csv(path: str) -> Iterator[Chunk]:
    fh = _open_binary(path)
    try:
        raw = fh.read()
    finally:
        fh.close()
    # Bytes that are not UTF-8 decode to lone surrogates (U+DC80-U+DCFF), which valid UTF-8
    # never produces: the row that holds one is rejected with its line, the rest is read.
    text = raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise InputError(f"{path}: empty CSV file (no header row)", field="path")
    bad_header = next((n for n in reader.fieldnames if _BAD_BYTE.search(n)), None)
    if bad_header is not None:
        raise InputError(
            f"{path}: line 1: the header is not valid UTF-8 ({_bad_byte(bad_header)})",
            field="path",
        )
    chunk: Chunk = []
    last_line = reader.line_num
    try:
        for rowno, row in enumerate(reader, start=1):
            first_line, last_line = last_line + 1, reader.line_num
            bad_cell = next(
                (
                    (k, v)
                    for k, v in row.items()
                    if isinstance(v, str) and k is not None and _BAD_BYTE.search(v)
                ),
                None,
            )
            if bad_cell is not None:
                k, v = bad_cell
                shown = json.dumps(row, default=str, ensure_ascii=False)
                chunk.append(
                    (
                        f"row {rowno}",
                        BadLine(
                            f"not valid UTF-8 ({_bad_byte(v)} of the cell, on line {first_line})",
                            shown.encode("utf-8", "replace").decode("utf-8")[:2000],
                            field=k,
                        ),
                    )
                )
                continue
            if None in row:  # more cells than header columns
                chunk.append(
                    (
                        f"row {rowno}",
                        BadLine(
                            "more cells than header columns", json.dumps(row, default=str)[:2000]
                        ),
                    )
                )
                continue
            chunk.append((f"row {rowno}", {k: _csv_value(k, v) for k, v in row.items()}))
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
    except csv.Error as exc:
        raise InputError(
            f"{path}: malformed CSV at line {reader.line_num}: {exc}", field="path"
        ) from exc
    if chunk:
        yield chunk


_BAD_BYTE = re.compile("[\udc80-\udcff]")


def _bad_byte(text: str) -> str:
    m = _BAD_BYTE.search(text)
    assert m is not None
    return f"byte 0x{ord(m.group()) - 0xDC00:02x} at character {m.start()}"


def read_parquet_rows(path: str) -> Iterator[Chunk]:
    """Row-wise reading of a Parquet file whose types need record-by-record validation."""
    pf = open_parquet(path)
    row = 0
    for batch in pf.iter_batches(batch_size=CHUNK):
        try:
            rows: list[Raw] = batch.to_pylist()
        except (ValueError, OverflowError):  # a cell Python cannot hold; find it row by row
            rows = [_parquet_row(batch, i) for i in range(batch.num_rows)]
        chunk: Chunk = []
        for rec in rows:
            row += 1
            chunk.append((f"row {row}", rec))
        yield chunk


def _parquet_row(batch: Any, i: int) -> Raw:
    """Row ``i`` of a batch, or a :class:`BadLine` naming the cell Python cannot hold."""
    # lazy: the gateway reaches this module through ingest.validation and never reads Parquet
    import pyarrow as pa
    import pyarrow.compute as pc

    one = batch.slice(i, 1)
    try:
        return one.to_pylist()[0]
    except (ValueError, OverflowError):
        pass
    shown: dict[str, Any] = {}
    problem: tuple[str, str] | None = None
    for name in one.schema.names:
        col = one.column(name)
        try:
            shown[name] = col.to_pylist()[0]
        except (ValueError, OverflowError):
            if pa.types.is_timestamp(col.type):
                shown[name] = f"{pc.cast(col, pa.int64())[0].as_py()} {col.type.unit} since 1970"
                reason = TIMESTAMP_RANGE_REASON
            elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                raw = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
                binary = pa.large_binary() if pa.types.is_large_string(col.type) else pa.binary()
                shown[name] = raw.view(binary).to_pylist()[0].decode("utf-8", "replace")
                reason = UTF8_BYTES_REASON
            else:
                shown[name] = str(col[0])
                reason = "cannot be read as a Python value"
            problem = problem or (name, reason)
    field, reason = problem or ("(record)", "cannot be read as a Python value")
    return BadLine(reason, json.dumps(shown, default=str, ensure_ascii=False)[:2000], field=field)


def open_parquet(path: str) -> Any:
    # lazy: the gateway reaches this module through ingest.validation and never reads Parquet
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file", field="path")
    try:
        return pq.ParquetFile(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})", field="path") from exc
