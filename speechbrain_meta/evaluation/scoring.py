"""How the few-shot protocol scores a query set with adapted weights.

A scorer is ``score(brain, fast_weights, query) -> (cer, wer)``, error
rates as fractions. The protocol is given one; ``recipe_error_rates`` is
the default for recipes that decode in ``compute_objectives`` and fill
``ErrorRateStats`` trackers (SpeechBrain's ASR recipe convention). It is
defined with the adaptation (``speechbrain_meta.adaptation``), whose
validation scores held-out utterances the same way.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.adaptation import recipe_error_rates

__all__ = ["recipe_error_rates"]
