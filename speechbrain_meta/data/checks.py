"""Checks of one utterance: its audio, its transcript, their lengths.

Training manifests (``manifest.py``) and test-time adaptation
(``speechbrain_meta.inference``) read utterances through these checks, so a
bad file is named (with its manifest line where there is one) and either
skipped and counted or refused, never met hours into a run:

* audio: missing, unreadable, truncated or empty file; NaN or inf samples;
  another sample rate (resampled, or refused); several channels (mixed
  down, or refused);
* transcript: empty; characters outside the model's labels (named; refused
  or dropped);
* both: audio too short for its transcript under CTC (a CTC path needs one
  frame per label plus one between repeated labels).

Authors
 * speechbrain-meta developers 2026
"""

import math
import os

import numpy as np
import soundfile as sf
import torch
import torchaudio


class BadInput(ValueError):
    """An utterance that cannot be used, and why.

    Arguments
    ---------
    reason : str
        What is wrong.
    path : str, optional
        The file (audio, or the manifest).
    line : int, optional
        The manifest line.

    Example
    -------
    >>> str(BadInput("empty transcript", "train.csv", 12))
    'train.csv:12: empty transcript'
    """

    def __init__(self, reason, path=None, line=None):
        self.reason = reason
        self.path = path
        self.line = line
        where = "" if path is None else str(path)
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {reason}" if where else reason)


def _wav_missing_bytes(path):
    """Bytes a RIFF/WAVE file's ``data`` chunk declares beyond its end.

    libsndfile reads a cut WAV file up to where it ends without a word, so
    the declared size is checked here. 0 for other formats.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return 0
            length = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                if length in (0, 0xFFFFFFFF):  # streamed: size unknown
                    return 0
                return max(0, f.tell() + length - size)
            f.seek(length + length % 2, os.SEEK_CUR)


def read_audio(path, sample_rate, resample=True, downmix=True, notes=None):
    """Reads an audio file, checked, at ``sample_rate``, one channel.

    Arguments
    ---------
    path : str
        The file.
    sample_rate : int
        The rate the model expects.
    resample : bool
        Resample another rate (and say so in ``notes``), else refuse it.
    downmix : bool
        Mix several channels down (and say so), else refuse them.
    notes : list, optional
        Receives a line per automatic fix.

    Returns
    -------
    torch.Tensor
        float32 samples, shape ``[time]``.

    Raises
    ------
    BadInput
        Missing, unreadable, truncated or empty file, non-finite samples,
        or a rate / channel count not allowed to be fixed.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros((800, 2)), 8000)
    >>> notes = []
    >>> read_audio(path, 16000, notes=notes).shape, len(notes)
    (torch.Size([1600]), 2)
    >>> read_audio(path, 16000, resample=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_meta.data.checks.BadInput: ...: sample rate 8000 Hz, ...
    """
    if not os.path.isfile(path):
        raise BadInput("missing audio file", path)
    try:
        info = sf.info(path)
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types
        raise BadInput(f"unreadable audio ({err})", path) from None
    if data.shape[0] == 0:
        raise BadInput("empty audio (no samples)", path)
    missing = _wav_missing_bytes(path)
    if missing:
        raise BadInput(
            f"truncated audio (the WAV header declares {missing} bytes more"
            " than the file holds)",
            path,
        )
    if info.frames > 0 and data.shape[0] < info.frames:
        raise BadInput(
            f"truncated audio ({data.shape[0]} of {info.frames} samples)", path
        )
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise BadInput(f"{bad} NaN or inf samples", path)
    if data.shape[1] > 1:
        if not downmix:
            raise BadInput(
                f"{data.shape[1]} channels, the model expects 1", path
            )
        data = data.mean(axis=1, keepdims=True)
        _note(notes, f"{path}: {info.channels} channels mixed down to 1")
    wav = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    if rate != sample_rate:
        if not resample:
            raise BadInput(
                f"sample rate {rate} Hz, the model expects {sample_rate} Hz",
                path,
            )
        wav = torchaudio.functional.resample(wav, rate, sample_rate)
        _note(notes, f"{path}: resampled from {rate} to {sample_rate} Hz")
    return wav


def _note(notes, text):
    if notes is not None:
        notes.append(text)


def check_transcript(text, labels=None, drop_unknown=False, notes=None):
    """A transcript checked against the model's labels.

    Arguments
    ---------
    text : str
        The transcript.
    labels : set of str, optional
        The characters the model can write (None: not checked).
    drop_unknown : bool
        Drop characters outside ``labels`` (and say so) instead of refusing.
    notes : list, optional
        Receives a line per automatic fix.

    Returns
    -------
    str
        The transcript (without unknown characters if dropped).

    Raises
    ------
    BadInput
        Empty transcript, or unknown characters (named) not to be dropped.

    Example
    -------
    >>> check_transcript("1 2x3", set("0123456789 "))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_meta.data.checks.BadInput: characters outside ...: 'x'
    >>> check_transcript("1 2x3", set("0123456789 "), drop_unknown=True)
    '1 23'
    """
    text = "" if text is None else str(text)
    if not text.strip():
        raise BadInput("empty transcript")
    if labels is None:
        return text
    unknown = sorted({c for c in text if c not in labels})
    if unknown:
        names = ", ".join(repr(c) for c in unknown)
        if not drop_unknown:
            raise BadInput(f"characters outside the model's labels: {names}")
        text = "".join(c for c in text if c in labels)
        _note(notes, f"dropped characters outside the labels: {names}")
        if not text.strip():
            raise BadInput("empty transcript once unknown characters dropped")
    return text


def ctc_frames_needed(tokens):
    """Output frames a CTC alignment of these labels needs at least.

    One per label, plus a blank between two equal labels in a row.

    Arguments
    ---------
    tokens : sequence
        The labels.

    Returns
    -------
    int

    Example
    -------
    >>> ctc_frames_needed("1 2 2")
    5
    >>> ctc_frames_needed("11")
    3
    """
    tokens = list(tokens)
    repeats = sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)
    return len(tokens) + repeats


def check_ctc_length(n_samples, tokens, samples_per_frame):
    """Refuses audio too short for its transcript under CTC.

    Arguments
    ---------
    n_samples : int
        Audio length in samples.
    tokens : sequence
        The labels.
    samples_per_frame : float
        Samples per output frame of the model (its time reduction).

    Raises
    ------
    BadInput
        If the model's output has fewer frames than the labels need.

    Example
    -------
    >>> check_ctc_length(16000, "1 2 3", 640)
    >>> check_ctc_length(2000, "1 2 3", 640)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_meta.data.checks.BadInput: audio too short ...: 3 ... 5 needed
    """
    frames = int(math.floor(n_samples / samples_per_frame))
    needed = ctc_frames_needed(tokens)
    if frames < needed:
        raise BadInput(
            "audio too short for its transcript under CTC: "
            f"{frames} output frames, {needed} needed"
        )
