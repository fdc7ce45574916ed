"""Bootstrap intervals."""

from __future__ import annotations

import numpy as np
from scipy import stats


def bootstrap_mean(
    values: np.ndarray, *, n_boot: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (scipy.stats.bootstrap).

    NaN for no values; a single value is its own interval.
    """
    n = values.size
    if n == 0:
        return float("nan"), float("nan")
    if n == 1:
        return float(values[0]), float(values[0])
    res = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=n_boot,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=rng,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
