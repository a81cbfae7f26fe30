"""Manifest loading that survives bad rows: named, counted skips.

A run must not die after hours because one file is missing or corrupt, or
one transcript is empty. ``load_manifest`` reads a SpeechBrain CSV manifest,
checks every row before training starts (the audio file exists and its
header is readable, the duration is positive, the transcript is not
empty), logs each bad row with its file and line, and returns a
``DynamicItemDataset`` of the good rows with the count of skips.

Authors
 * speechbrain-meta developers 2026
"""

import csv
import os

import soundfile as sf
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

MAX_LOGGED = 20  # bad rows named one by one in the log, then counted


def check_row(row, audio_key="wav", text_key="wrd"):
    """Why a manifest row cannot be used, or None if it can.

    Arguments
    ---------
    row : dict
        One row, ``$``-replacements already applied.
    audio_key : str
        Column holding the audio path.
    text_key : str or None
        Column holding the transcript (None: not checked).

    Returns
    -------
    str or None
        The reason, or None.

    Example
    -------
    >>> check_row({"wav": "/nonexistent.wav", "wrd": "1 2"})
    'missing audio file /nonexistent.wav'
    """
    path = row.get(audio_key)
    if not path:
        return f"no {audio_key!r} value"
    if not os.path.isfile(path):
        return f"missing audio file {path}"
    try:
        info = sf.info(path)
    except Exception as err:  # soundfile raises several types
        return f"unreadable audio file {path} ({err})"
    if info.frames <= 0:
        return f"empty audio file {path}"
    if text_key is not None and not str(row.get(text_key, "")).strip():
        return "empty transcript"
    return None


def load_manifest(
    csv_path, replacements=None, audio_key="wav", text_key="wrd", check=True
):
    r"""Reads a CSV manifest into a DynamicItemDataset, skipping bad rows.

    Arguments
    ---------
    csv_path : str
        The manifest (SpeechBrain CSV with an ``ID`` column).
    replacements : dict, optional
        ``$key`` replacements, as ``DynamicItemDataset.from_csv``.
    audio_key : str
        Column holding the audio path.
    text_key : str or None
        Column holding the transcript.
    check : bool
        Check the rows (else load them as they are).

    Returns
    -------
    tuple
        ``(dataset, skipped)``; ``skipped`` lists ``(line, id, reason)``.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> tmp = tempfile.mkdtemp()
    >>> sf.write(os.path.join(tmp, "a.wav"), np.zeros(160), 16000)
    >>> with open(os.path.join(tmp, "m.csv"), "w") as f:
    ...     _ = f.write("ID,duration,wav,wrd\n"
    ...                 "a,0.01,$root/a.wav,1 2\n"
    ...                 "b,0.01,$root/b.wav,3\n"
    ...                 "c,0.01,$root/a.wav,\n")
    >>> data, skipped = load_manifest(os.path.join(tmp, "m.csv"),
    ...                               {"root": tmp})
    >>> len(data), [(line, i) for line, i, _ in skipped]
    (1, [(3, 'b'), (4, 'c')])
    """
    replacements = replacements or {}
    data = {}
    skipped = []
    with open(csv_path, newline="", encoding="utf-8") as fin:
        reader = csv.DictReader(fin, skipinitialspace=True)
        if reader.fieldnames is None or "ID" not in reader.fieldnames:
            raise ValueError(f"{csv_path}: not a manifest (no ID column)")
        for row in reader:
            line = reader.line_num
            utt_id = row.pop("ID")
            for key, value in row.items():
                if value is None:
                    continue
                for name, repl in replacements.items():
                    value = value.replace(f"${name}", str(repl))
                row[key] = value
            if "duration" in row:
                try:
                    row["duration"] = float(row["duration"])
                except (TypeError, ValueError):
                    row["duration"] = -1.0
            reason = None
            if utt_id in data:
                reason = "duplicate ID"
            elif check:
                reason = check_row(row, audio_key, text_key)
                if reason is None and row.get("duration", 1.0) <= 0:
                    reason = "non-positive duration"
            if reason is not None:
                skipped.append((line, utt_id, reason))
                if len(skipped) <= MAX_LOGGED:
                    logger.warning(
                        "%s:%d: skipping %s: %s", csv_path, line, utt_id, reason
                    )
                continue
            data[utt_id] = row
    if skipped:
        logger.warning(
            "%s: %d of %d rows skipped (%d named above)",
            csv_path,
            len(skipped),
            len(skipped) + len(data),
            min(len(skipped), MAX_LOGGED),
        )
    if not data:
        raise ValueError(f"{csv_path}: no usable row ({len(skipped)} skipped)")
    return DynamicItemDataset(data), skipped
