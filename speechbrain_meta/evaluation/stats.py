"""Statistics of the few-shot results: means, intervals, result rows.

Authors
 * speechbrain-meta developers 2026
"""

import math

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


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


def summary_row(
    method,
    k,
    cers,
    wers,
    adaptation=None,
    n_tasks=0,
    trainable_params=0,
    adapt_seconds=(),
    bleus=None,
    **extra,
):
    """One result row from episode scores (also pools several runs).

    Arguments
    ---------
    method : str
        The method.
    k : int
        The support size.
    cers, wers : list of float
        One score per scored episode.
    adaptation : dict, optional
        ``Adaptation.describe()`` (None at k = 0: no adaptation).
    n_tasks : int
        Tasks scored.
    trainable_params : int
        Adapted parameters.
    adapt_seconds : list of float
        Adaptation time of each episode.
    bleus : list of float, optional
        One BLEU score per scored episode, as a fraction (sacrebleu's
        score / 100), where the recipe translates: the row then has
        ``bleu_mean``, ``bleu_ci95`` and ``episode_bleus``.
    **extra : dict
        More fields of the row.

    Returns
    -------
    dict

    Example
    -------
    >>> row = summary_row("m", 5, [0.2, 0.4], [0.5, 0.7])
    >>> row["cer_mean"], row["n_episodes"], round(row["cer_ci95"], 3)
    (0.30000000000000004, 2, 1.271)
    >>> summary_row("m", 5, [0.2], [0.5], bleus=[0.4])["bleu_mean"]
    0.4
    """
    cer_mean, cer_ci = confidence_interval(cers)
    wer_mean, wer_ci = confidence_interval(wers)
    adaptation = adaptation or {}
    row = {
        "method": method,
        "k_shot": int(k),
        "adapt_steps": int(adaptation.get("steps", 0)) if k else 0,
        "adaptation": adaptation,
        "cer_mean": cer_mean,
        "cer_ci95": cer_ci,
        "wer_mean": wer_mean,
        "wer_ci95": wer_ci,
        "n_tasks": int(n_tasks),
        "n_episodes": len(cers),
        "trainable_params": int(trainable_params),
        "adapt_seconds_mean": (
            sum(adapt_seconds) / len(adapt_seconds) if adapt_seconds else 0.0
        ),
        "episode_cers": list(cers),
        "episode_wers": list(wers),
    }
    if bleus is not None:
        if len(bleus) != len(cers):
            raise ValueError(
                f"{len(bleus)} BLEU scores for {len(cers)} episodes"
            )
        row["bleu_mean"], row["bleu_ci95"] = confidence_interval(bleus)
        row["episode_bleus"] = list(bleus)
    row.update(extra)
    logger.info(
        "few-shot %s k=%d: CER %.4f +- %s, WER %.4f%s (%d episodes)",
        method,
        k,
        cer_mean,
        "n/a" if cer_ci is None else f"{cer_ci:.4f}",
        wer_mean,
        "" if bleus is None else f", BLEU {100 * row['bleu_mean']:.1f}",
        len(cers),
    )
    return row
