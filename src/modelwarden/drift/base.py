"""The one detector contract and the one result every drift detector returns.

A detector takes its parameters in ``__init__``, learns the reference window in
``fit(baseline)`` and compares a window against it in ``test(current)``. Every detector answers
with a :class:`DriftResult`, so the CLI, the report and the policy engine read one shape.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import numpy as np

from modelwarden.errors import ConflictError, DimensionError, InputError

Status = Literal["OK", "ALERT", "INSUFFICIENT_DATA"]

STATUS_OK: Status = "OK"
STATUS_ALERT: Status = "ALERT"
STATUS_INSUFFICIENT: Status = "INSUFFICIENT_DATA"

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_N = 20
DEFAULT_PERMUTATIONS = 1000


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into plain Python, and NaN/inf into None.

    JSON has no NaN, and a report that silently writes ``NaN`` is unreadable by strict parsers.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


@dataclass(frozen=True)
class DriftResult:
    """What a detector concluded about one current window against its baseline.

    ``score`` is the detector's statistic and ``threshold`` its calibrated critical value at
    ``alpha`` (for a permutation test, the ``1 - alpha`` quantile of the permutation null), so
    ``score > threshold`` and ``p_value <= alpha`` tell the same story up to ties. ``drifted``
    also asks that the effect size clear the detector's floor (``details["material"]``), and is
    None when there was too little data to decide. ``details`` is JSON-ready.
    """

    drifted: bool | None
    status: Status
    score: float
    p_value: float | None
    threshold: float | None
    method: str
    n_baseline: int
    n_current: int
    alpha: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "status": self.status,
            "score": jsonable(self.score),
            "p_value": jsonable(self.p_value),
            "threshold": jsonable(self.threshold),
            "method": self.method,
            "n_baseline": int(self.n_baseline),
            "n_current": int(self.n_current),
            "alpha": float(self.alpha),
            "details": jsonable(self.details),
        }


def as_embeddings(x: object, name: str) -> np.ndarray:
    """``x`` as a finite, non-empty 2-D float array; a 1-D input is one vector."""
    try:
        arr = np.asarray(x, dtype=np.float64) if not _is_float_array(x) else np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric embeddings: {exc}", field=name) from exc
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D array of embeddings, got {arr.ndim} dimensions", field=name
        )
    if arr.shape[0] == 0:
        raise InputError(f"{name} is empty", field=name)
    if arr.shape[1] == 0:
        raise InputError(f"{name} has vectors of dimension 0", field=name)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InputError(
            f"{name} contains NaN or infinite values (first in row {bad})", field=name, row=bad
        )
    return arr


def _is_float_array(x: object) -> bool:
    # float32 input stays float32: copying a 50k x 768 window to float64 doubles its memory.
    return isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)


def check_same_dim(baseline: np.ndarray, current: np.ndarray, name: str = "current") -> None:
    if baseline.shape[1] != current.shape[1]:
        raise DimensionError(
            f"baseline has {baseline.shape[1]} dimensions and {name} has {current.shape[1]}",
            field=name,
            expected=int(baseline.shape[1]),
            got=int(current.shape[1]),
        )


def check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, int | float) and 0.0 < float(alpha) < 1.0):
        raise InputError("alpha must be a number strictly between 0 and 1", field="alpha")
    return float(alpha)


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}", field=name)
    return int(value)


class Detector(ABC):
    """Base of every drift detector: parameters in ``__init__``, ``fit`` then ``test``.

    Below ``min_n`` rows in either window the answer is ``INSUFFICIENT_DATA`` rather than a
    test on a handful of points, whose power is too low for an ``OK`` to mean anything.
    """

    method: str = "detector"

    def __init__(self, *, alpha: float = DEFAULT_ALPHA, min_n: int = DEFAULT_MIN_N) -> None:
        self.alpha = check_alpha(alpha)
        self.min_n = check_positive_int(min_n, "min_n")
        self._baseline: np.ndarray | None = None

    def fit(self, baseline: object) -> Self:
        self._baseline = self._validate_baseline(baseline)
        self._after_fit(self._baseline)
        return self

    def test(self, current: object) -> DriftResult:
        baseline = self._require_fit()
        cur = self._validate_current(current, baseline)
        if baseline.shape[0] < self.min_n or cur.shape[0] < self.min_n:
            return self._insufficient(baseline.shape[0], cur.shape[0])
        return self._test(baseline, cur)

    def fit_test(self, baseline: object, current: object) -> DriftResult:
        return self.fit(baseline).test(current)

    @property
    def params(self) -> dict[str, Any]:
        """The parameters that shaped the result, recorded in its details."""
        return {"alpha": self.alpha, "min_n": self.min_n}

    # -- for subclasses ---------------------------------------------------------------------

    def _validate_baseline(self, baseline: object) -> np.ndarray:
        return as_embeddings(baseline, "baseline")

    def _validate_current(self, current: object, baseline: np.ndarray) -> np.ndarray:
        cur = as_embeddings(current, "current")
        check_same_dim(baseline, cur)
        return cur

    def _after_fit(self, baseline: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Precompute what depends on the baseline alone."""

    @abstractmethod
    def _test(self, baseline: np.ndarray, current: np.ndarray) -> DriftResult: ...

    def _require_fit(self) -> np.ndarray:
        if self._baseline is None:
            raise ConflictError(f"{self.method}: call fit(baseline) before test(current)")
        return self._baseline

    def _insufficient(self, n_baseline: int, n_current: int) -> DriftResult:
        return DriftResult(
            drifted=None,
            status=STATUS_INSUFFICIENT,
            score=float("nan"),
            p_value=None,
            threshold=None,
            method=self.method,
            n_baseline=int(n_baseline),
            n_current=int(n_current),
            alpha=self.alpha,
            details={"min_n": self.min_n, "params": self.params},
        )

    def _result(
        self,
        *,
        drifted: bool,
        score: float,
        p_value: float | None,
        threshold: float | None,
        n_baseline: int,
        n_current: int,
        details: dict[str, Any],
    ) -> DriftResult:
        details = {**details, "params": self.params}
        return DriftResult(
            drifted=bool(drifted),
            status=STATUS_ALERT if drifted else STATUS_OK,
            score=float(score),
            p_value=None if p_value is None else float(p_value),
            threshold=None if threshold is None else float(threshold),
            method=self.method,
            n_baseline=int(n_baseline),
            n_current=int(n_current),
            alpha=self.alpha,
            details=jsonable(details),
        )
