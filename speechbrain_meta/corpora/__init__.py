"""Corpus producers: what writes the audio and manifests the recipes read.

The synthesised corpora (SynthDigits and its speech-translation pairs,
SynthTones; espeak-ng in a worker process), the real-speech set built from
Debian's recorded voice prompts, simulated room responses for
SpeechBrain's ``AddReverb``, and stand-ins of real corpora in their exact
on-disk layouts. What reads corpora (manifest checks, tasks, episodes)
is in ``speechbrain_meta.data``.

Authors
 * speechbrain-meta developers 2026
"""
