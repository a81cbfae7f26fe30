"""SpeechBrain's ``BLEUStats``, importable without its NLP extras.

SpeechBrain 1.1 keeps ``BLEUStats`` in ``speechbrain.integrations.nlp.bleu``
(``speechbrain.utils.bleu`` re-exports it), but the package's
``__init__`` imports its flair and spaCy wrappers first, so that without
flair installed ``from speechbrain.utils.bleu import BLEUStats`` fails
although ``BLEUStats`` itself needs only sacrebleu. This module imports it
the documented way where that works, and otherwise loads the very file
``bleu.py`` of that package alone (nothing re-implemented). Scores are
sacrebleu's corpus BLEU with its default ``13a`` tokenisation, on the
detokenised text, as SpeechBrain's speech-translation recipes report it.

Example
-------
>>> bleu = BLEUStats()
>>> bleu.append(["a"], ["four one seven"], [["four one seven"]])
>>> bleu.summarize("BLEU")  # no 4-gram in three words
0.0
>>> bleu.append(["b"], ["two two nine one"], [["two two nine one"]])
>>> bleu.summarize("BLEU")
100.00000000000004

Authors
 * speechbrain-meta developers 2026
"""

import importlib.util
import os

import speechbrain

__all__ = ["BLEUStats"]


def _speechbrain_bleu_stats():
    """SpeechBrain's ``BLEUStats`` class (see the module docstring)."""
    try:
        from speechbrain.utils.bleu import BLEUStats as stats_class
    except ImportError:
        path = os.path.join(
            os.path.dirname(speechbrain.__file__),
            "integrations",
            "nlp",
            "bleu.py",
        )
        spec = importlib.util.spec_from_file_location(
            "speechbrain_integrations_nlp_bleu", path
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        stats_class = module.BLEUStats
    return stats_class


BLEUStats = _speechbrain_bleu_stats()
