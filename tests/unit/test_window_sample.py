"""The deterministic sample of a large drift window, and folding a sampled window into a reservoir."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from modelwarden.drift.reservoir import Reservoir
from modelwarden.embed.sampling import id_hashes, sample_mask
from modelwarden.errors import InputError
from modelwarden.report.weekly import n_pair, n_text


def _ids(lo: int, hi: int) -> list[str]:
    return [f"req-{i:07d}" for i in range(lo, hi)]


def test_the_hash_of_an_id_depends_on_the_id_alone() -> None:
    ids = _ids(0, 1000)
    h = id_hashes(ids)
    # Not the position, the chunking, the string type or the other ids of the window.
    np.testing.assert_array_equal(id_hashes(ids[::-1]), h[::-1])
    chunked = pa.chunked_array([pa.array(ids[:300]), pa.array(ids[300:])])
    np.testing.assert_array_equal(id_hashes(chunked), h)
    np.testing.assert_array_equal(id_hashes(pa.array(ids, pa.large_string())), h)
    np.testing.assert_array_equal(id_hashes(["x", *ids[:5], "a-much-longer-id-" * 3])[1:6], h[:5])
    # Fixed values: the same on every machine and engine (a change here changes every sample).
    assert id_hashes(["r0", "", "é"]).tolist() == [
        3711027599084175969,
        17280346270528514342,
        11337192735045482043,
    ]
    assert len(set(h.tolist())) == 1000


def test_a_window_sample_is_bounded_deterministic_and_stable_as_the_window_grows() -> None:
    week = _ids(0, 20_000)
    keep = sample_mask(week, 1000)
    assert keep.sum() == 1000
    np.testing.assert_array_equal(sample_mask(list(week), 1000), keep)
    kept = {i for i, k in zip(week, keep, strict=True) if k}
    # A larger window that holds this one keeps, of this window's rows, only rows kept here.
    three_weeks = _ids(0, 60_000)
    big = {i for i, k in zip(three_weeks, sample_mask(three_weeks, 1000), strict=True) if k}
    assert big & set(week) <= kept
    assert big & set(week)  # not vacuous
    # Small windows are read whole.
    assert sample_mask(week[:999], 1000).all()


def test_a_window_sample_is_uniform_over_the_window() -> None:
    ids = _ids(0, 100_000)
    keep = np.flatnonzero(sample_mask(ids, 10_000))
    # Ten equal stretches of the window (e.g. days) get about a tenth each: binomial sd ~ 30.
    counts = np.bincount(keep // 10_000, minlength=10)
    assert np.all(np.abs(counts - 1000) < 150), counts
    # Ids that differ in their last character only are not kept together.
    assert 0.05 < np.mean(np.diff(keep) == 1) < 0.15


def test_rows_of_one_id_are_kept_or_left_together() -> None:
    ids = _ids(0, 500) + _ids(0, 500)
    keep = sample_mask(ids, 100)
    np.testing.assert_array_equal(keep[:500], keep[500:])
    # Still about k rows: the rows of 50 ids (the k-th lowest hash's id may add one).
    assert keep.sum() in (100, 101)
    with pytest.raises(ValueError):
        sample_mask(ids, 0)


def test_a_sampled_window_is_folded_as_the_window_it_stands_for() -> None:
    # Window A (1,000 rows, all given) then window B (10,000 rows, 1,000 of them given): B's
    # share of the reservoir is that of its rows, 10/11, as if all of B had been folded.
    shares, dim = [], 2
    for seed in range(20):
        res = Reservoir(size=200, seed=seed)
        res.add(np.zeros((1000, dim)), [f"a{i}" for i in range(1000)])
        res.add(np.ones((1000, dim)), [f"b{i}" for i in range(1000)], stream_rows=10_000)
        assert res.seen == 11_000
        assert len(res.ids) == len(set(res.ids)) == 200
        shares.append(np.mean([i.startswith("b") for i in res.ids]))
        assert all(
            res.vectors[k, 0] == (1.0 if i.startswith("b") else 0.0) for k, i in enumerate(res.ids)
        )
    assert 0.87 < np.mean(shares) < 0.95
    # Folding the sample as if it were the whole window would give B half of it.
    res = Reservoir(size=200, seed=0)
    res.add(np.zeros((1000, dim)), [f"a{i}" for i in range(1000)])
    res.add(np.ones((1000, dim)), [f"b{i}" for i in range(1000)])
    assert np.mean([i.startswith("b") for i in res.ids]) < 0.7


def test_a_sample_too_small_for_the_reservoir_is_refused() -> None:
    res = Reservoir(size=200, seed=0)
    with pytest.raises(InputError) as err:
        res.add(np.ones((50, 2)), [f"b{i}" for i in range(50)], stream_rows=10_000)
    assert err.value.field == "vectors"
    with pytest.raises(InputError) as err:
        res.add(np.ones((50, 2)), [f"b{i}" for i in range(50)], stream_rows=10)
    assert err.value.field == "stream_rows"
    assert res.seen == 0 and res.ids == []


def test_a_sampled_drift_row_says_how_many_rows_it_tested_of_how_many() -> None:
    row = {
        "n_baseline": 50_000,
        "n_baseline_total": 3_000_000,
        "n_current": 41_234,
        "n_current_total": 41_234,
    }
    assert n_pair(row) == "50,000 of 3,000,000 (sampled) / 41234"
    assert n_text({"n_current": 7}, "current") == "7"
