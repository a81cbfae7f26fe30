"""Statistics of the few-shot results: means and confidence intervals.

Authors
 * speechbrain-meta developers 2026
"""

import math


def confidence_interval(values, confidence=0.95):
    """Mean and Student-t confidence half-width of a sample.

    Arguments
    ---------
    values : list of float
        The sample.
    confidence : float
        The two-sided confidence level.

    Returns
    -------
    tuple
        ``(mean, half_width)``; the half-width is None for fewer than two
        values.

    Example
    -------
    >>> mean, half = confidence_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> mean, round(half, 4)
    (3.0, 1.9632)
    """
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("confidence_interval of an empty sample")
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    return mean, t * math.sqrt(var / n)
