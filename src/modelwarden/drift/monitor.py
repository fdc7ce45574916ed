"""Drift over stored windows: per plant and overall, baseline window against current window."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwarden.drift.centroid import SEED_THRESHOLD, check_drift
from modelwarden.drift.history import ALL_PLANTS, load_reservoir, record_results
from modelwarden.embed.service import (
    WindowReader,
    WindowVectors,
    embed_missing,
    embedder_key,
)
from modelwarden.errors import InputError, NotFoundError
from modelwarden.settings import Settings
from modelwarden.stats.multitest import benjamini_hochberg
from modelwarden.store.engines import to_arrow
from modelwarden.store.reads import filtered_requests, open_store, plants, shared_strings
from modelwarden.windows import Window

MIN_SAMPLES = 20
ALL_SCOPE = "all plants"


BASELINE_RESERVOIR = "reservoir"
BY_COLUMNS = ("plant_id", "model_version")


def parse_drift_by(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``plant_id,model_version`` → the grouping of drift rows (besides the all-plants row)."""
    if value is None:
        return ("plant_id",)
    items = value.split(",") if isinstance(value, str) else list(value)
    cols = tuple(dict.fromkeys(c.strip() for c in items if c.strip()))
    for c in cols:
        if c not in BY_COLUMNS:
            raise InputError(
                f"cannot group drift by {c!r}; choose from {', '.join(BY_COLUMNS)}", field="by"
            )
    return cols


def drift_scopes(
    settings: Settings,
    current: Window,
    *,
    plant: str | None = None,
    version: str | None = None,
    by: Sequence[str] = ("plant_id",),
) -> list[tuple[str | None, str | None]]:
    """The (plant, version) pairs to test, None meaning all; the overall row comes first.

    The overall row is all plants (or ``plant``) and all versions (or ``version``); then one row
    per plant, per version, or per plant and version of the current window, as ``by`` asks.
    """
    scopes: list[tuple[str | None, str | None]] = [(plant, version)]
    cols = [c for c in BY_COLUMNS if c in by]
    if not cols or (plant and cols == ["plant_id"]) or (version and cols == ["model_version"]):
        return scopes
    con = open_store(settings).connect()
    t = filtered_requests(con, current.since, current.until, plant, version, include_shadow=False)
    found = con.to_pyarrow(t.select(*cols).distinct()).to_pylist()
    keys = {
        (
            r["plant_id"] if "plant_id" in cols else plant,
            r["model_version"] if "model_version" in cols else version,
        )
        for r in found
    }
    scopes += sorted(
        (
            k
            for k in keys
            if k != (plant, version)
            and all(v is not None for v, c in zip(k, BY_COLUMNS, strict=True) if c in cols)
        ),
        key=lambda k: (str(k[0]), str(k[1])),
    )
    return scopes


def drift_over_windows(
    settings: Settings,
    baseline: Window | str,
    current: Window,
    *,
    plant: str | None = None,
    version: str | None = None,
    by: Sequence[str] = ("plant_id",),
    kind: str = "prompt",
    embedder: str | None = None,
    threshold: float = SEED_THRESHOLD,
    method: str = "suite",
    alpha: float = 0.05,
    explain: bool = True,
    embed: bool = True,
    record: bool = True,
    seed_score: bool = False,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Drift of the ``current`` window against ``baseline``, overall and per plant or version.

    ``baseline`` is a :class:`Window` or ``"reservoir"`` (the reservoir-sampled reference of
    each plant, see :mod:`modelwarden.drift.baseline`). ``by`` splits the current window by
    ``plant_id`` and/or ``model_version``; a version's traffic is compared with its plant's
    baseline (every version), so a version new this week is compared with what the plant saw
    before. ``kind`` is ``prompt``, ``response`` or ``quality`` (feedback scores and safety
    rates, see :func:`quality_over_windows`).

    ``method="seed"`` is the notebook's uncalibrated centroid check against ``threshold``;
    every other method is calibrated at ``alpha``. An alert comes with its explanation: the
    clusters of prompts that are new or grew, and the most novel prompts.

    Requests of either window without a stored vector from this embedder are embedded first
    (unless ``embed`` is False). A scope with fewer than ``MIN_SAMPLES`` vectors on either side
    is reported as ``INSUFFICIENT_DATA`` rather than guessed. With ``record`` the rows are
    stored in the drift history (:mod:`modelwarden.drift.history`), replacing an earlier run of
    the same window, scope, baseline and method. With ``seed_score`` each row also carries the
    seed's centroid-cosine score of the same vectors (``seed_score``), so that a report showing
    both reads the windows once.
    """
    by = parse_drift_by(by)
    if kind == "quality":
        if not isinstance(baseline, Window):
            raise InputError(
                "quality drift compares two windows; give --baseline WINDOW", field="baseline"
            )
        rows = quality_over_windows(
            settings, baseline, current, plant=plant, version=version, by=by, alpha=alpha
        )
    else:
        rows = _embedding_drift(
            settings,
            baseline,
            current,
            plant=plant,
            version=version,
            by=by,
            kind=kind,
            embedder=embedder,
            threshold=threshold,
            method=method,
            alpha=alpha,
            explain=explain,
            embed=embed,
            seed_score=seed_score,
            progress=progress,
            on_total=on_total,
        )
    if record:
        record_results(settings, rows)
    return rows


def _embedding_drift(
    settings: Settings,
    baseline: Window | str,
    current: Window,
    *,
    plant: str | None,
    version: str | None,
    by: Sequence[str],
    kind: str,
    embedder: str | None,
    threshold: float,
    method: str,
    alpha: float,
    explain: bool,
    embed: bool,
    seed_score: bool,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    # lazy: the detectors load SciPy (about a second); what only reads stored drift (the history,
    # the baselines' list) imports this module without them
    from modelwarden.drift.registry import EMBEDDING_DETECTORS

    if kind not in ("prompt", "response"):
        raise InputError("kind must be prompt, response or quality", field="kind")
    if method not in EMBEDDING_DETECTORS:
        raise InputError(
            f"unknown method {method!r}; choose from {', '.join(EMBEDDING_DETECTORS)}",
            field="method",
        )
    if not isinstance(baseline, Window) and baseline != BASELINE_RESERVOIR:
        raise InputError("baseline must be a window or 'reservoir'", field="baseline")
    name = embedder_key(settings, embedder)
    if embed and name != "inline":
        windows = [current] if not isinstance(baseline, Window) else [baseline, current]
        for w in windows:
            embed_missing(
                settings, kind, embedder, w.since, w.until, progress=progress, on_total=on_total
            )
    scopes = drift_scopes(settings, current, plant=plant, version=version, by=by)
    if plant is None and isinstance(baseline, Window) and by == ("plant_id",) and not version:
        # Plants of the baseline too: a plant that went quiet is reported, not skipped.
        seen = {p for p, _ in scopes}
        scopes += [
            (p, None) for p in plants(settings, baseline.since, current.until) if p not in seen
        ]
        scopes = scopes[:1] + sorted(scopes[1:], key=lambda k: (str(k[0]), str(k[1])))
    rows = []
    alerted: dict[int, tuple[WindowVectors, WindowVectors]] = {}  # windows kept to explain
    with WindowReader(settings, kind, name) as reader:
        # Each window once for all scopes (one pass over its vectors); a version is compared
        # with its plant's baseline (every version).
        base_scopes = list(dict.fromkeys((p, None) for p, _ in scopes))
        base_of: dict[str | None, tuple[WindowVectors, str]] = {}
        if isinstance(baseline, Window):
            read = reader.read_scopes(baseline.since, baseline.until, base_scopes)
            base_of = {
                p: (w, baseline.label()) for (p, _), w in zip(base_scopes, read, strict=True)
            }
            b_key = baseline.label()
        else:
            base_of = {
                p: reservoir_vectors(settings, p, kind, name, current) for p, _ in base_scopes
            }
            b_key = BASELINE_RESERVOIR
        cur_of = reader.read_scopes(current.since, current.until, scopes)
        for (scope_plant, scope_version), c in zip(scopes, cur_of, strict=True):
            b, b_label = base_of[scope_plant]
            row = drift_row(
                b,
                c,
                scope_plant,
                scope_version,
                kind=kind,
                embedder=name,
                method=method,
                alpha=alpha,
                threshold=threshold,
                explain=False,
                seed_score=seed_score,
            )
            row.update(
                baseline=b_label,
                baseline_key=b_key,
                current=current.label(),
                window_start=current.since,
                window_end=current.until,
            )
            rows.append(row)
            if row["status"] == "ALERT":
                alerted[id(row)] = (b, c)
    if method != "seed":
        adjust_over_scopes(rows, alpha)
    if explain:
        for row in rows:
            if row["status"] == "ALERT" and id(row) in alerted:
                row["explanation"] = explanation(*alerted[id(row)], alpha)
    return rows


def adjust_over_scopes(rows: list[dict[str, Any]], alpha: float) -> None:
    """Benjamini-Hochberg over the scopes of one run: a row stays an alert only when its
    p-value, adjusted for the number of scopes tested (``p_adjusted``), is below ``alpha``.

    Each scope's test alone has an ``alpha`` chance of a false alert; a weekly report tests the
    whole fleet and every plant (and each version's traffic), so without this a week without
    drift would show at least one false alert in up to two weeks of five (five scopes of
    prompts and five of answers). With it, a week without drift anywhere keeps the ``alpha``
    chance of any false alert among a run's scopes; when some scope did drift, the others are
    judged at the false discovery rate ``alpha``, which keeps the power to see a small canary's
    drift beside a plant's (Holm's step-down would need each further scope to pass
    ``alpha / m``). A row that alerted alone says so in ``note``.
    """
    tested = [r for r in rows if r.get("p_value") is not None]
    if not tested:
        return
    adjusted = benjamini_hochberg([r["p_value"] for r in tested])
    for r, p in zip(tested, adjusted, strict=True):
        r["p_adjusted"] = float(p)
        r["scopes_tested"] = len(tested)
        if r["status"] == "ALERT" and p > alpha:
            r["status"] = "OK"
            r["note"] = (
                f"alert alone (p = {r['p_value']:.3g}), not over {len(tested)} scopes "
                f"(Benjamini-Hochberg p = {p:.3g})"
            )


def reservoir_vectors(
    settings: Settings, plant: str | None, kind: str, embedder: str, current: Window | None = None
) -> tuple[WindowVectors, str]:
    """The stored reservoir of ``plant`` (None: all plants) as a baseline, and its description.

    A reservoir that already holds rows of the ``current`` window cannot judge it: that is an
    input error rather than a test of a window against itself.
    """
    loaded = load_reservoir(settings, plant or ALL_PLANTS, kind, embedder)
    if loaded is None:
        if plant is None:
            raise NotFoundError(
                f"no reservoir baseline for all plants ({kind}, {embedder}); "
                "build one with: modelwarden baseline update",
                field="baseline",
            )
        empty = WindowVectors([], [], np.zeros((0, 0), np.float32))
        return empty, "reservoir (none for this plant)"
    res, info = loaded
    if current is not None:
        for w in info.folded:
            if datetime.fromisoformat(
                w["since"]
            ) < current.until and current.since < datetime.fromisoformat(w["until"]):
                raise InputError(
                    f"the {plant or 'all plants'} reservoir already holds {w['label']}, which "
                    f"overlaps {current.label()}; compare a later window or a baseline window",
                    field="current",
                )
    return WindowVectors(list(res.ids), list(res.texts), res.vectors), info.describe(res)


def drift_row(
    b: WindowVectors,
    c: WindowVectors,
    plant: str | None,
    version: str | None,
    *,
    kind: str,
    embedder: str,
    method: str,
    alpha: float,
    threshold: float = SEED_THRESHOLD,
    explain: bool = True,
    seed_score: bool = False,
) -> dict[str, Any]:
    """One scope's verdict as a flat row (the shape the CLI, API, report and history share).

    ``n_baseline`` and ``n_current`` count the rows tested; ``n_baseline_total`` and
    ``n_current_total`` the window's requests with a vector, more when ``sampled``."""
    row: dict[str, Any] = {
        "scope": plant or ALL_SCOPE,
        "model_version": version,
        "kind": kind,
        "embedder": embedder,
        "method": "centroid_cosine (seed)" if method == "seed" else method,
        "n_baseline": len(b.request_ids),
        "n_current": len(c.request_ids),
        # A window larger than drift_window_max is tested on a sample: n_* rows of n_*_total.
        "n_baseline_total": b.n_total,
        "n_current_total": c.n_total,
        "sampled": b.sampled or c.sampled,
        "threshold": threshold if method == "seed" else None,
        "p_value": None,
        "alpha": None if method == "seed" else alpha,
    }
    enough = min(len(b.request_ids), len(c.request_ids)) >= MIN_SAMPLES
    if seed_score:
        seed = check_drift(b.vectors, c.vectors, threshold)[0] if enough else None
        row["seed_score"] = None if seed is None else float(np.round(seed, 6))
    if not enough:
        row.update(score=None, status="INSUFFICIENT_DATA")
    elif method == "seed":
        score, status = check_drift(b.vectors, c.vectors, threshold)
        row.update(score=float(np.round(score, 6)), status=status)
    else:
        row.update(test_vectors(b.vectors, c.vectors, method, alpha))
        if explain and row["status"] == "ALERT":
            row["explanation"] = explanation(b, c, alpha)
    return row


def test_vectors(
    baseline: np.ndarray, current: np.ndarray, method: str, alpha: float
) -> dict[str, Any]:
    """A calibrated detector's verdict on two sets of vectors, as a flat row."""
    from modelwarden.drift.registry import get_detector  # lazy: SciPy, as in _embedding_drift

    try:
        det = get_detector(method, alpha=alpha)
    except InputError as exc:
        if exc.field != "alpha":
            raise
        det = get_detector(method)
    res = det.fit(baseline).test(current)
    out: dict[str, Any] = {
        "score": None if res.score is None else float(res.score),
        "p_value": None if res.p_value is None else float(res.p_value),
        "threshold": None if res.threshold is None else float(res.threshold),
        "status": res.status,
    }
    members = res.details.get("members") if isinstance(res.details, dict) else None
    if isinstance(members, dict):
        out["members"] = {
            k: {f: v.get(f) for f in ("status", "score", "p_value", "threshold")}
            for k, v in members.items()
            if isinstance(v, dict)
        }
    return out


def explanation(b: Any, c: Any, alpha: float, top: int = 3) -> dict[str, Any]:
    """The clusters that are new or grew most, and the single most novel prompts."""
    from modelwarden.drift.explain import explain_drift  # lazy: SciPy, as in _embedding_drift

    exp = explain_drift(
        b.vectors, c.vectors, texts_current=c.texts, texts_baseline=b.texts, alpha=alpha
    )
    topics = []
    for ch in exp.emerging[:top]:
        reps = [getattr(e, "text", None) or str(e) for e in ch.representatives]
        topics.append(
            {
                "status": ch.status,
                "share_baseline": round(float(ch.share_baseline), 4),
                "share_current": round(float(ch.share_current), 4),
                "key_terms": list(ch.key_terms)[:6],
                "examples": [r for r in reps if r][:2],
            }
        )
    novel = [getattr(n, "text", None) for n in exp.novel[:top]]
    return {"topics": topics, "novel_prompts": [t for t in novel if t]}


# ---- quality drift -----------------------------------------------------------------------------

QUALITY_MIN_DAYS = 7


_DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)


def quality_frame(
    settings: Settings, since: datetime, until: datetime, plant: str | None = None
) -> dict[str, np.ndarray]:
    """Per request of ``[since, until)``: time, plant, version, effective score, safety flag."""
    # lazy: kpi.compute loads Ibis's expression API at import; only quality drift needs it here
    from modelwarden.kpi.compute import effective_feedback

    con = open_store(settings).connect()
    t = filtered_requests(con, since, until, plant, include_shadow=False)
    t = effective_feedback(t, con.table("feedback"))
    t = t.select("timestamp", "plant_id", "model_version", "score", "contains_safety_keyword")
    table = to_arrow(con, t.order_by("timestamp"))
    us = (
        pc.cast(table.column("timestamp"), pa.timestamp("us", tz="UTC"))
        .cast(pa.int64())
        .to_numpy(zero_copy_only=False)
    )
    # Column by column in Arrow and NumPy: per row in Python, four million requests (a week and
    # its baseline at ten million stored) took 15 s of the weekly report. A row's UTC day is its
    # microseconds since 1970 floor-divided by a day's; each distinct day is written out once.
    days, of_row = np.unique(us // _DAY_US, return_inverse=True)
    labels = np.array([(_EPOCH + timedelta(days=int(d))).isoformat() for d in days], dtype=object)
    return {
        "day": labels[of_row] if us.size else np.zeros(0, dtype=object),
        "timestamp": us,
        "plant": shared_strings(table.column("plant_id")),
        "version": shared_strings(table.column("model_version")),
        "score": pc.cast(table.column("score"), pa.float64()).to_numpy(zero_copy_only=False),
        "unsafe": table.column("contains_safety_keyword")
        .fill_null(False)
        .to_numpy(zero_copy_only=False)
        .astype(float),
    }


def _daily_means(days: np.ndarray, values: np.ndarray) -> tuple[list[str], np.ndarray]:
    keep = np.isfinite(values)
    days, values = days[keep], values[keep]
    if not days.size:
        return [], np.zeros(0)
    labels, inverse = np.unique(days.astype(str), return_inverse=True)
    means = np.bincount(inverse, weights=values) / np.bincount(inverse)
    return labels.tolist(), means


def quality_over_windows(
    settings: Settings,
    baseline: Window,
    current: Window,
    *,
    plant: str | None = None,
    version: str | None = None,
    by: Sequence[str] = ("plant_id",),
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """Feedback and safety drift per scope: two-sample tests between the windows, CUSUM by day.

    For every scope (as in :func:`drift_over_windows`) four rows: ``feedback_score`` (a
    one-sided Mann-Whitney test that ratings fell), ``safety_rate`` (Fisher's exact test that the
    flag rate rose), ``cusum`` on the daily average rating (downwards, standardised by the
    baseline days) and ``bernoulli_cusum`` on the safety flags request by request (upwards, with
    a simulated threshold). The row's ``signal`` says which series it is about; ``n_baseline``
    and ``n_current`` count ratings, requests or days.
    """
    # lazy: SciPy, as in _embedding_drift
    from modelwarden.drift.quality import (
        BernoulliCusumDetector,
        CusumDetector,
        RateDriftDetector,
        ScoreDriftDetector,
    )

    scopes = drift_scopes(settings, current, plant=plant, version=version, by=by)
    base = quality_frame(settings, baseline.since, baseline.until, plant)
    cur = quality_frame(settings, current.since, current.until, plant)
    rows: list[dict[str, Any]] = []
    for scope_plant, scope_version in scopes:
        bm = np.ones(base["day"].size, dtype=bool)
        cm = np.ones(cur["day"].size, dtype=bool)
        if scope_plant:
            bm &= base["plant"] == scope_plant
            cm &= cur["plant"] == scope_plant
        if scope_version:
            cm &= cur["version"] == scope_version
        common = {
            "scope": scope_plant or ALL_SCOPE,
            "model_version": scope_version,
            "kind": "quality",
            "alpha": alpha,
            "baseline": baseline.label(),
            "baseline_key": baseline.label(),
            "current": current.label(),
            "window_start": current.since,
            "window_end": current.until,
        }
        b_score, c_score = base["score"][bm], cur["score"][cm]
        b_score, c_score = b_score[np.isfinite(b_score)], c_score[np.isfinite(c_score)]
        tests: list[tuple[str, Any, Any, Any]] = [
            ("feedback", ScoreDriftDetector(alpha=alpha, min_n=MIN_SAMPLES), b_score, c_score),
            (
                "safety",
                RateDriftDetector(alpha=alpha, min_n=MIN_SAMPLES),
                base["unsafe"][bm],
                cur["unsafe"][cm],
            ),
        ]
        for signal, det, b, c in tests:
            rows.append({**common, "signal": signal, **_quality_result(det, b, c)})
        _, b_days = _daily_means(base["day"][bm], base["score"][bm])
        c_labels, c_days = _daily_means(cur["day"][cm], cur["score"][cm])
        det = CusumDetector(direction="decrease", alpha=alpha, min_n=QUALITY_MIN_DAYS)
        row = {**common, "signal": "feedback"}
        row.update(_quality_result(det, b_days, c_days, index=c_labels))
        rows.append(row)
        # Safety flags are rare: a daily-rate CUSUM would read one flagged answer in a quiet
        # day as a four-sigma day; the Bernoulli CUSUM runs per request, calibrated by simulation.
        det_b = BernoulliCusumDetector(alpha=alpha, min_n=MIN_SAMPLES)
        row = {**common, "signal": "safety"}
        row.update(
            _quality_result(
                det_b, base["unsafe"][bm], cur["unsafe"][cm], index=list(cur["day"][cm])
            )
        )
        rows.append(row)
    return rows


def _quality_result(
    det: Any, baseline: np.ndarray, current: np.ndarray, index: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "method": det.method,
        "n_baseline": int(baseline.size),
        "n_current": int(current.size),
        "score": None,
        "p_value": None,
        "threshold": None,
        "status": "INSUFFICIENT_DATA",
    }
    if baseline.size == 0 or current.size == 0:
        return out
    det.fit(baseline)
    res = det.test(current, index=index) if index is not None else det.test(current)
    d = res.details
    out.update(
        score=None if res.status == "INSUFFICIENT_DATA" else _num(res.score),
        p_value=_num(res.p_value),
        threshold=_num(res.threshold),
        status=res.status,
    )
    if res.status == "INSUFFICIENT_DATA":
        return out
    if det.method in ("cusum", "bernoulli_cusum"):
        out["detail"] = {
            "direction": d.get("alarm_direction"),
            "alarm_day": d.get("alarm_label"),
            "change_day": d.get("change_label"),
        }
        if det.method == "cusum":
            out["detail"]["baseline_mean"] = _num(d.get("baseline_mean"))
        else:
            out["detail"]["rate_baseline"] = _num(d.get("rate_baseline"))
            out["detail"]["rate_current"] = _num(d.get("rate_current"))
    elif det.method == "feedback_score":
        out["detail"] = {
            "mean_baseline": _num(d.get("mean_baseline")),
            "mean_current": _num(d.get("mean_current")),
        }
    else:
        out["detail"] = {
            "rate_baseline": _num(d.get("rate_baseline")),
            "rate_current": _num(d.get("rate_current")),
        }
    return out


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return round(f, 10) if np.isfinite(f) else None
