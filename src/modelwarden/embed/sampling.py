"""The deterministic sample of a large drift window: chosen by a hash of each request id.

A window with more rows than the cap is tested on the rows whose id hashes lowest (bottom-k
sampling). The hash is computed here, in NumPy over the ids' UTF-8 bytes (64-bit FNV-1a, then
MurmurHash3's finaliser so that ids differing in their last character spread over the whole
range), not by an engine: DuckDB's and Spark's ``hash()`` differ, and the sample must be the same
on both. So:

* the same request is in or out of every read of the same window, on every engine and in every
  process (no random state);
* the sample is uniform: a good hash of distinct ids is a random order of them, and the lowest
  ``k`` of a random order are a uniform sample without replacement, independent of the vectors,
  so a calibrated test on the sample keeps its false-alarm rate;
* it is stable as a window grows: a row kept from the larger window is kept from any smaller
  window that holds it (its hash is at most the larger window's threshold, which is at most the
  smaller one's).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)


def id_hashes(ids: pa.Array | pa.ChunkedArray | list[str]) -> np.ndarray:
    """A 64-bit hash of each id (uint64), the same for the same id on any machine."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    arr = ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string())
    arr = arr.cast(pa.large_string())
    if arr.null_count:
        raise ValueError("ids must not be missing")
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint64)
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(int(lengths.max())):
            live = np.flatnonzero(lengths > j)
            h[live] = (h[live] ^ data[starts[live] + j].astype(np.uint64)) * _FNV_PRIME
        h ^= h >> np.uint64(33)
        h *= _M1
        h ^= h >> np.uint64(33)
        h *= _M2
        h ^= h >> np.uint64(33)
    return h


def sample_mask(ids: pa.Array | pa.ChunkedArray | list[str], k: int) -> np.ndarray:
    """True for the rows kept when at most about ``k`` of ``ids`` are wanted: those whose hash is
    among the ``k`` lowest (every row when there are at most ``k``). Rows of one id (a request id
    stored on two days) are kept or left together, so the last id kept can add a row more."""
    h = id_hashes(ids)
    if k < 1:
        raise ValueError("k must be at least 1")
    if h.size <= k:
        return np.ones(h.size, dtype=bool)
    threshold = np.partition(h, k - 1)[k - 1]
    return h <= threshold
