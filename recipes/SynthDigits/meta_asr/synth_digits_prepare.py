"""Data preparation for the SynthDigits meta-ASR recipe.

The corpus is synthesised with espeak-ng (``espeakng-loader``, one fresh
worker process per speaker so that the same seed gives the same bytes):
connected digits read in many languages and voices, see
``speechbrain_meta.data.synth``. Nothing is downloaded.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.data.synth import prepare_synth_digits

__all__ = ["prepare_synth_digits"]
