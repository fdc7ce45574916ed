"""The report cache is pruned: entries unused for too long or beyond the size cap go."""

from __future__ import annotations

import os
import time
from pathlib import Path

from modelwarden.report.cache import CACHE_DIR, cached_rows, lookup, prune, remember
from modelwarden.settings import Settings

DAY = 86400.0


def _settings(tmp_path: Path, **kw: int) -> Settings:
    return Settings(data_dir=tmp_path / "data", embedder="hashing", **kw)  # type: ignore[arg-type]


def _entries(s: Settings) -> set[str]:
    return {p.stem for p in (s.data_dir / CACHE_DIR).glob("*.json")}


def _age(s: Settings, days: float) -> None:
    """Every entry last used ``days`` ago."""
    then = time.time() - days * DAY
    for p in (s.data_dir / CACHE_DIR).glob("*.json"):
        os.utime(p, (then, then))


def test_entries_unused_for_longer_than_the_limit_go_and_recent_ones_stay(tmp_path: Path) -> None:
    s = _settings(tmp_path, report_cache_days=14)
    rows = [{"scope": "all plants", "p": 0.5}]
    remember(s, {"q": "old"}, rows, fingerprint="fp-1")
    remember(s, {"q": "used"}, rows, fingerprint="fp-1")
    _age(s, 20)
    old_and_used = _entries(s)
    assert len(old_and_used) == 2

    # A lookup marks its entry used; the other one stays unused for 20 days.
    assert lookup(s, {"q": "used"}, "fp-1") == rows
    remember(s, {"q": "new"}, rows, fingerprint="fp-2")  # a write prunes

    assert lookup(s, {"q": "old"}, "fp-1") is None
    assert lookup(s, {"q": "used"}, "fp-1") == rows
    assert lookup(s, {"q": "new"}, "fp-2") == rows
    assert len(_entries(s)) == 2


def test_beyond_the_size_cap_the_entries_used_longest_ago_go(tmp_path: Path) -> None:
    s = _settings(tmp_path, report_cache_mb=1)
    big = [{"text": "x" * 300_000}]  # about 0.3 MB an entry
    for i in range(6):
        remember(s, {"q": i}, big, fingerprint="fp")
        then = time.time() - (10 - i) * 60  # entry i used 10 - i minutes ago
        for p in (s.data_dir / CACHE_DIR).glob("*.json"):
            if p.stat().st_mtime > time.time() - 5:
                os.utime(p, (then, then))
    total = sum(p.stat().st_size for p in (s.data_dir / CACHE_DIR).glob("*.json"))
    assert total <= 1024 * 1024
    kept = [i for i in range(6) if lookup(s, {"q": i}, "fp") is not None]
    assert kept == [3, 4, 5]  # the three used last fit in 1 MB


def test_a_computed_entry_is_kept_even_over_the_cap_and_found_again(tmp_path: Path) -> None:
    s = _settings(tmp_path, report_cache_mb=1)
    huge = [{"text": "y" * 1_500_000}]
    calls = []

    def compute() -> list[dict[str, str]]:
        calls.append(1)
        return huge

    assert cached_rows(s, {"q": "huge"}, compute, fingerprint="fp") == huge
    assert cached_rows(s, {"q": "huge"}, compute, fingerprint="fp") == huge
    assert len(calls) == 1


def test_a_write_in_progress_is_left_alone_and_a_dead_writers_file_goes(tmp_path: Path) -> None:
    s = _settings(tmp_path, report_cache_days=1)
    folder = s.data_dir / CACHE_DIR
    folder.mkdir(parents=True)
    writing = folder / ".abc.123.tmp"
    writing.write_text("[", encoding="utf-8")
    dead = folder / ".def.456.tmp"
    dead.write_text("[", encoding="utf-8")
    then = time.time() - 2 * DAY
    os.utime(dead, (then, then))
    os.utime(writing, (then, then))
    os.utime(writing)  # still being written: modified just now

    assert prune(s) == []
    assert writing.exists()
    assert not dead.exists()


def test_a_missing_cache_folder_prunes_nothing(tmp_path: Path) -> None:
    assert prune(_settings(tmp_path)) == []
