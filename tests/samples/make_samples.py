#!/usr/bin/env python3
"""Writes the corpus samples that ``tests/recipes/*.csv`` rows run on.

SpeechBrain's recipe tests run each row of ``tests/recipes/<Dataset>.csv``
from the repository's root with the row's debug flags, so a recipe for a
corpus on disk needs a small copy of that corpus in the repository; here
``tests/samples/<Dataset>/``, in the real release's layout and formats
(LibriSpeech's flac and ``*.trans.txt``, Common Voice's 48 kHz mp3 and
tsv files, CoVoST 2's translation tsv files, Speech Commands' 16-bit wav
files and lists). The speakers are espeak-ng voices written by
``speechbrain_meta.corpora.standins`` with fixed seeds; the end-to-end tests
copy these folders, plant bad lines in the copies and run the rows on them.
A second run writes the same files, but not all bit for bit: when checked
(2026-12-06), the clips of 2 of the 10 Speech Commands speakers and of 2
LibriSpeech speakers differed by up to 0.03 in amplitude; the committed
files are the ones the tests ran on.

Run from the repository's root (it needs espeak-ng and ffmpeg's or
libsndfile's mp3 writer, as the stand-ins do)::

    python tests/samples/make_samples.py

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import os
import shutil

from speechbrain_meta.corpora.standins import (
    common_voice_standin,
    covost_standin,
    librispeech_standin,
    speech_commands_standin,
)

SAMPLES = os.path.dirname(os.path.abspath(__file__))

LIBRISPEECH = {"train-clean-100": 4, "dev-clean": 2, "test-clean": 2}
COMMON_VOICE = {
    "en": {"train": 3, "dev": 3, "test": 3},
    "de": {"train": 2},
    "fr": {"train": 2},
    "es": {"dev": 2},
    "ro": {"dev": 1},
    "ca": {"train": 1},
}
COMMON_VOICE_OLD_COLUMNS = {"pl": {"test": 2}}
COVOST = {
    "de": {"train": 2, "dev": 1, "test": 1},
    "fr": {"train": 2, "test": 1},
    "es": {"train": 1, "dev": 2},
    "it": {"train": 1, "test": 3},
}
SPEECH_COMMANDS_WORDS = [
    "yes", "no", "up", "down", "left",  # test words of the rows
    "bed", "bird", "cat",  # dev words
    "zero", "one", "two", "three",  # the rest: meta-train
]  # fmt: skip


def make_samples(folder=SAMPLES):
    """Writes the four corpus samples under ``folder`` (replacing them).

    Arguments
    ---------
    folder : str
        Where ``LibriSpeech/``, ``CommonVoice/``, ``CoVoST/{cv,covost}/``
        and ``Google-speech-commands/`` go.

    Returns
    -------
    dict
        Sample name to the number of files written.

    Example
    -------
    >>> import tempfile
    >>> counts = make_samples(tempfile.mkdtemp())  # doctest: +SKIP
    >>> counts["LibriSpeech"]  # doctest: +SKIP
    96
    """
    names = ["LibriSpeech", "CommonVoice", "CoVoST", "Google-speech-commands"]
    for name in names:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    path = {name: os.path.join(folder, name) for name in names}
    librispeech_standin(
        path["LibriSpeech"],
        LIBRISPEECH,
        chapters_per_speaker=2,
        utterances_per_chapter=5,
    )
    common_voice_standin(path["CommonVoice"], COMMON_VOICE)
    common_voice_standin(
        path["CommonVoice"], COMMON_VOICE_OLD_COLUMNS, columns="old", seed=1
    )
    covost_standin(
        os.path.join(path["CoVoST"], "cv"),
        os.path.join(path["CoVoST"], "covost"),
        COVOST,
        6,
    )
    speech_commands_standin(
        path["Google-speech-commands"],
        SPEECH_COMMANDS_WORDS,
        speakers=10,
        repetitions=2,
        validation_speakers=3,
        testing_speakers=3,
        noise_seconds=3.0,  # the real corpus: about a minute each
    )
    return {
        name: sum(len(files) for _, _, files in os.walk(path[name]))
        for name in names
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default=SAMPLES)
    counts = make_samples(parser.parse_args().folder)
    for name, count in counts.items():
        print(f"{name}: {count} files")
