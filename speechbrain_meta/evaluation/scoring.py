"""How the few-shot protocol scores a query set with adapted weights.

A scorer is ``score(brain, fast_weights, query) -> (cer, wer)``, error
rates as fractions. The protocol is given one; ``recipe_error_rates`` is
the default for recipes that decode in ``compute_objectives`` and fill
``ErrorRateStats`` trackers (SpeechBrain's ASR recipe convention).

Authors
 * speechbrain-meta developers 2026
"""

import speechbrain as sb
import torch


def recipe_error_rates(brain, fast_weights, query):
    """CER and WER from the recipe's own decoding and metrics.

    Runs the recipe's ``on_stage_start(TEST)`` (which must create
    ``brain.cer_metric`` and ``brain.wer_metric``), then its
    ``compute_forward``/``compute_objectives`` at ``Stage.TEST`` on the
    query with the fast weights in place, and reads both trackers.

    Arguments
    ---------
    brain : MetaBrain
        The method's brain (a recipe Brain behind a meta brain).
    fast_weights : dict
        Adapted weights (``adapt_to_task``).
    query : PaddedBatch
        The query utterances.

    Returns
    -------
    tuple of float
        ``(cer, wer)`` as fractions.
    """
    brain.on_stage_start(sb.Stage.TEST, None)
    with torch.no_grad(), brain.evaluation_ctx:
        brain.task_loss(fast_weights, query, sb.Stage.TEST)
    cer = brain.cer_metric.summarize("error_rate") / 100.0
    wer = brain.wer_metric.summarize("error_rate") / 100.0
    return float(cer), float(wer)
