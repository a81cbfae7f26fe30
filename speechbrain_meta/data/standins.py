"""Small stand-ins for real corpora, in their exact on-disk layouts.

The recipes for corpora users have on disk (LibriSpeech...) are tested, and
can be tried, without the corpus: these functions synthesise a few
speakers with espeak-ng (``speechbrain_meta.data.synth``, one fresh worker
process per speaker: same seed, same bytes) and write them where and how
the real corpus keeps them, so that the recipe's own prepare script reads
them unchanged. Nothing is downloaded.

Authors
 * speechbrain-meta developers 2026
"""

import os

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechbrain_meta.data.synth import synthesize_fresh

SAMPLE_RATE = 16000

# English words read by the stand-in speakers (LibriSpeech's transcripts
# are upper-case English with apostrophes).
WORDS = (
    "the a of and to in he was that it his her you had with as for she "
    "not at but be on they by all this which one have from or were my "
    "there so an said been their would when what them if we no out who "
    "into more will then up could time little man don't it's o'er"
).split()

# English voices of espeak-ng: one per stand-in speaker, cyclically.
ENGLISH_VOICES = [
    f"{lang}+{variant}"
    for variant in ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m7")
    for lang in ("en", "en-us")
]


def _sentence(rng, min_words=3, max_words=7):
    n = int(rng.integers(min_words, max_words + 1))
    return " ".join(rng.choice(WORDS, size=n)).upper()


def _to_16k(samples, rate):
    wav = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    return torchaudio.functional.resample(wav, rate, SAMPLE_RATE).numpy()


def _synthesize_speaker(voice, texts, rng):
    """16 kHz float waveforms of one speaker's texts (one fresh process)."""
    request = {
        "voice": voice,
        "rate": int(rng.integers(140, 200)),
        "pitch": int(rng.integers(25, 75)),
        "pitch_range": int(rng.integers(30, 70)),
        "volume": 100,
    }
    rate, samples = synthesize_fresh([{**request, "text": t} for t in texts])
    for text, wav in zip(texts, samples):
        if isinstance(wav, str):
            raise RuntimeError(f"espeak-ng could not say {text!r}: {wav}")
    return [_to_16k(wav, rate) for wav in samples]


def librispeech_standin(
    root,
    splits=None,
    chapters_per_speaker=1,
    utterances_per_chapter=6,
    seed=0,
):
    """Writes a LibriSpeech-layout corpus of synthesised English speakers.

    ``root/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac``
    and one ``<speaker>-<chapter>.trans.txt`` per chapter (lines
    ``<utterance id> <UPPER-CASE TRANSCRIPT>``), as in the real corpus;
    speaker and chapter ids are numbers, disjoint across splits.

    Arguments
    ---------
    root : str
        The folder that holds the split folders (LibriSpeech's
        ``LibriSpeech/``).
    splits : dict, optional
        Split name to number of speakers. Default: 4 in
        ``train-clean-100``, 2 in ``dev-clean`` and in ``test-clean``.
    chapters_per_speaker : int
        Chapters per speaker.
    utterances_per_chapter : int
        Utterances per chapter.
    seed : int
        Everything is drawn from it.

    Returns
    -------
    dict
        Split name to its list of speaker ids.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> librispeech_standin(root, {"dev-clean": 1}, utterances_per_chapter=2)
    {'dev-clean': ['1000']}
    >>> sorted(os.listdir(os.path.join(root, "dev-clean", "1000", "100000")))
    ['1000-100000-0000.flac', '1000-100000-0001.flac', '1000-100000.trans.txt']
    """
    if splits is None:
        splits = {"train-clean-100": 4, "dev-clean": 2, "test-clean": 2}
    rng = np.random.default_rng(seed)
    speakers = {}
    speaker_id = 1000
    for split, n_speakers in splits.items():
        speakers[split] = []
        for _ in range(n_speakers):
            voice = ENGLISH_VOICES[(speaker_id - 1000) % len(ENGLISH_VOICES)]
            spk = str(speaker_id)
            speakers[split].append(spk)
            chapters = [
                str(speaker_id * 100 + c) for c in range(chapters_per_speaker)
            ]
            texts = [
                _sentence(rng)
                for _ in range(chapters_per_speaker * utterances_per_chapter)
            ]
            wavs = _synthesize_speaker(voice, texts, rng)
            for c, chapter in enumerate(chapters):
                folder = os.path.join(root, split, spk, chapter)
                os.makedirs(folder, exist_ok=True)
                lines = []
                for u in range(utterances_per_chapter):
                    i = c * utterances_per_chapter + u
                    utt = f"{spk}-{chapter}-{u:04d}"
                    sf.write(
                        os.path.join(folder, utt + ".flac"),
                        wavs[i],
                        SAMPLE_RATE,
                        format="FLAC",
                    )
                    lines.append(f"{utt} {texts[i]}\n")
                trans = os.path.join(folder, f"{spk}-{chapter}.trans.txt")
                with open(trans, "w") as f:
                    f.writelines(lines)
            speaker_id += 1
    return speakers
