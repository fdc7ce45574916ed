"""The reservoir sample behind ``--baseline reservoir``: Algorithm R, seeded and resumable."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from modelwarden.drift.reservoir import Reservoir
from modelwarden.errors import DimensionError, InputError


def _rows(start: int, stop: int, dim: int = 2) -> tuple[np.ndarray, list[str], list[str]]:
    ids = [str(i) for i in range(start, stop)]
    vectors = np.repeat(np.arange(start, stop, dtype=np.float32)[:, None], dim, axis=1)
    return vectors, ids, [f"prompt {i}" for i in ids]


def _textbook(size: int, n: int, seed: int) -> list[str]:
    """Vitter's Algorithm R, one row at a time, with the same generator."""
    rng = np.random.default_rng(seed)
    sample = [str(i) for i in range(min(size, n))]
    for t in range(size, n):
        j = int(rng.integers(0, t + 1))
        if j < size:
            sample[j] = str(t)
    return sample


def test_a_seed_gives_exactly_these_rows() -> None:
    r = Reservoir(size=3, seed=0)
    entered = r.add(*_rows(0, 10))
    assert r.ids == ["9", "6", "7"]
    assert r.vectors[:, 0].tolist() == [9.0, 6.0, 7.0]
    assert r.texts == ["prompt 9", "prompt 6", "prompt 7"]
    assert (r.seen, entered) == (10, 7)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_it_is_algorithm_r(seed: int) -> None:
    r = Reservoir(size=50, seed=seed)
    r.add(*_rows(0, 1000))
    assert r.ids == _textbook(50, 1000, seed)
    # Every vector and text stays with its id.
    assert r.vectors[:, 0].tolist() == [float(i) for i in r.ids]
    assert r.texts == [f"prompt {i}" for i in r.ids]


def test_folding_in_pieces_across_a_restart_gives_the_same_sample() -> None:
    whole = Reservoir(size=40, seed=5)
    whole.add(*_rows(0, 700))
    pieces = Reservoir(size=40, seed=5)
    for lo, hi in ((0, 13), (13, 40), (40, 41), (41, 300), (300, 700)):
        pieces.add(*_rows(lo, hi))
        # Saved and loaded between windows, as a restart would.
        pieces = Reservoir.from_arrays(dict(pieces.to_arrays()))
    assert pieces.ids == whole.ids
    assert np.array_equal(pieces.vectors, whole.vectors)
    assert pieces.seen == whole.seen == 700


def test_fewer_rows_than_the_size_are_all_kept() -> None:
    r = Reservoir(size=100, seed=0)
    assert r.add(*_rows(0, 30)) == 30
    assert r.ids == [str(i) for i in range(30)]


def test_every_row_is_equally_likely_to_be_kept() -> None:
    # 4000 seeded reservoirs of 5 rows out of a stream of 40: each row is kept with probability
    # 1/8, early or late. The counts are fixed by the seeds; a biased sampler (one that keeps
    # the first rows, or favours the last) fails the chi-square test by a wide margin.
    size, n, trials = 5, 40, 4000
    counts = np.zeros(n)
    for seed in range(trials):
        r = Reservoir(size=size, seed=seed)
        r.add(*_rows(0, n))
        counts[[int(i) for i in r.ids]] += 1
    expected = trials * size / n
    assert counts.sum() == trials * size
    chi2 = stats.chisquare(counts, np.full(n, expected))
    assert chi2.pvalue > 0.01
    # First and last quarter of the stream are kept equally often, within 5 %.
    first, last = counts[: n // 4].sum(), counts[-n // 4 :].sum()
    assert abs(first - last) / expected < 0.05 * n / 4


def test_bad_rows_are_refused() -> None:
    r = Reservoir(size=3, seed=0)
    r.add(*_rows(0, 2, dim=4))
    with pytest.raises(DimensionError) as exc:
        r.add(*_rows(2, 4, dim=3))
    assert exc.value.field == "vectors"
    bad = np.full((1, 4), np.nan, dtype=np.float32)
    with pytest.raises(InputError, match="NaN"):
        r.add(bad, ["x"])
    with pytest.raises(InputError) as exc:
        Reservoir(size=0)
    assert exc.value.field == "size"
