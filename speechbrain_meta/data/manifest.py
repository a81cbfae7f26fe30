"""Manifest loading that survives bad rows: named, counted skips.

A run must not die after hours because one file is missing or corrupt, or
one transcript is empty. ``load_manifest`` reads a SpeechBrain CSV manifest,
checks every row before training starts (``check_row``: the audio file
exists and is readable, and where asked decodes cleanly at the right rate
with finite samples and is long enough for its transcript under CTC; the
transcript is not empty and uses known characters; the duration parses and
is positive; the ID is new), names each bad row with its file and line, and
either skips and counts it or stops (``bad_input: skip | error``).

Authors
 * speechbrain-meta developers 2026
"""

import csv
import os

import soundfile as sf
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.logger import get_logger

from speechbrain_meta.data.checks import (
    BadInput,
    check_ctc_length,
    check_transcript,
    read_audio,
)
from speechbrain_meta.data.tasks import task_values

logger = get_logger(__name__)

MAX_LOGGED = 20  # bad rows named one by one in the log, then counted


def check_row(
    row,
    audio_key="wav",
    text_key="wrd",
    audio_checks=None,
    labels=None,
    samples_per_frame=None,
):
    """Why a manifest row cannot be used, or None if it can.

    Arguments
    ---------
    row : dict
        One row, ``$``-replacements already applied.
    audio_key : str
        Column holding the audio path.
    text_key : str or None
        Column holding the transcript (None: not checked).
    audio_checks : dict, optional
        Decode the audio and check it (``read_audio`` arguments:
        ``sample_rate``, ``resample``, ``downmix``): truncated file, NaN or
        inf samples, another rate, several channels. None: the header
        only (exists, readable, not empty).
    labels : set of str, optional
        The characters the model knows (None: not checked).
    samples_per_frame : float, optional
        The model's time reduction: audio too short for its transcript
        under CTC is refused (needs ``audio_checks`` or the header).

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
    if audio_checks is not None:
        try:
            n_samples = len(read_audio(path, **audio_checks))
        except BadInput as err:
            return f"{err.reason}: {path}"
    else:
        try:
            info = sf.info(path)
        except Exception as err:  # soundfile raises several types
            return f"unreadable audio file {path} ({err})"
        if info.frames <= 0:
            return f"empty audio file {path}"
        n_samples = info.frames
    if text_key is None:
        return None
    text = str(row.get(text_key) or "").strip()
    try:
        text = check_transcript(text, labels)
        if samples_per_frame is not None:
            check_ctc_length(n_samples, text, samples_per_frame)
    except BadInput as err:
        return err.reason
    return None


def write_manifest(path, rows, fields=None, lineterminator="\r\n"):
    """Writes a CSV manifest whole or not at all.

    The rows go to a temporary file beside ``path`` (named with the process
    ID, so that two processes preparing at once never share one), which then
    replaces ``path``: a reader, or a run killed halfway, never sees a
    half-written manifest.

    Arguments
    ---------
    path : str
        The manifest to write.
    rows : list of dict
        Its rows.
    fields : list of str, optional
        The columns, in order (default: the first row's keys).
    lineterminator : str
        As for ``csv.writer`` (its default by default).

    Returns
    -------
    str
        ``path``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> _ = write_manifest(path, [{"ID": "a", "wrd": "ONE"}])
    >>> open(path).read().splitlines()
    ['ID,wrd', 'a,ONE']
    """
    if fields is None:
        fields = list(rows[0]) if rows else []
    tmp = f"{path}.{os.getpid()}.partial"
    with open(tmp, "w", newline="", encoding="utf-8") as fout:
        writer = csv.DictWriter(fout, fields, lineterminator=lineterminator)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def load_manifest(
    csv_path,
    replacements=None,
    audio_key="wav",
    text_key="wrd",
    check=True,
    bad_input="skip",
    audio_checks=None,
    labels=None,
    samples_per_frame=None,
):
    r"""Reads a CSV manifest into a DynamicItemDataset, checking every row.

    Every row is checked before training starts (``check_row``: the audio,
    the transcript, the duration, a duplicate ID), and each bad one is
    named with its file and line. ``bad_input`` says what then happens:
    ``skip`` (counted, the run goes on) or ``error`` (a clean stop at the
    first bad row). A manifest without an ``ID``, audio or text column is
    refused either way.

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
    bad_input : str
        ``skip`` or ``error``.
    audio_checks : dict, optional
        Decode and check every audio file (``check_row``).
    labels : set of str, optional
        Refuse transcripts with other characters.
    samples_per_frame : float, optional
        Refuse audio too short for its transcript under CTC.

    Returns
    -------
    tuple
        ``(dataset, skipped)``; ``skipped`` lists ``(line, id, reason)``.

    Raises
    ------
    BadInput
        A bad manifest, or a bad row with ``bad_input: error``.

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
    >>> load_manifest(os.path.join(tmp, "m.csv"), {"root": tmp},
    ...               bad_input="error")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_meta.data.checks.BadInput: ...m.csv:3: b: missing audio ...
    """
    if bad_input not in ("skip", "error"):
        raise ValueError(f"bad_input: {bad_input!r} (skip or error)")
    replacements = replacements or {}
    data = {}
    skipped = []
    with open(csv_path, newline="", encoding="utf-8") as fin:
        reader = csv.DictReader(fin, skipinitialspace=True)
        columns = reader.fieldnames or []
        needed = ["ID", audio_key] + ([text_key] if text_key else [])
        missing = [c for c in needed if c not in columns]
        if missing:
            raise BadInput(
                f"not a usable manifest: no {missing} column(s) "
                f"(has {columns})",
                csv_path,
            )
        for row in reader:
            line = reader.line_num
            utt_id = row.pop("ID")
            for key, value in row.items():
                if value is None:
                    continue
                for name, repl in replacements.items():
                    value = value.replace(f"${name}", str(repl))
                row[key] = value
            reason = None
            if "duration" in row:
                try:
                    row["duration"] = float(row["duration"])
                except (TypeError, ValueError):
                    reason = f"unparsable duration {row['duration']!r}"
            if reason is None and utt_id in data:
                reason = "duplicate ID"
            elif reason is None and check:
                reason = check_row(
                    row,
                    audio_key,
                    text_key,
                    audio_checks,
                    labels,
                    samples_per_frame,
                )
                if reason is None and row.get("duration", 1.0) <= 0:
                    reason = f"non-positive duration {row['duration']}"
            if reason is not None:
                if bad_input == "error":
                    raise BadInput(f"{utt_id}: {reason}", csv_path, line)
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
        raise BadInput(f"no usable row ({len(skipped)} skipped)", csv_path)
    return DynamicItemDataset(data), skipped


def drop_long_utterances(dataset, max_duration, name):
    """The dataset without utterances longer than ``max_duration`` seconds.

    What is dropped (count, hours, share) and the longest utterance kept
    are logged: a length policy is visible in the run's log.

    Arguments
    ---------
    dataset : DynamicItemDataset
        With a ``duration`` field.
    max_duration : float or None
        The cap in seconds (None: keep everything).
    name : str
        The split, for the log.

    Returns
    -------
    tuple
        ``(dataset, report)``: ``report`` has ``dropped``, ``dropped_hours``,
        ``longest_kept`` (seconds).

    Example
    -------
    >>> data = DynamicItemDataset(
    ...     {"a": {"duration": 3.0}, "b": {"duration": 30.0}})
    >>> kept, report = drop_long_utterances(data, 16.0, "dev")
    >>> len(kept), report["dropped"], report["longest_kept"]
    (1, 1, 3.0)
    """
    durations = task_values(dataset, "duration")
    over = (
        []
        if max_duration is None
        else [d for d in durations if d > max_duration]
    )
    if over:
        dataset = dataset.filtered_sorted(
            key_max_value={"duration": max_duration}
        )
    kept = [d for d in durations if max_duration is None or d <= max_duration]
    report = {
        "dropped": len(over),
        "dropped_hours": round(sum(over) / 3600, 4),
        "longest_kept": max(kept, default=0.0),
    }
    logger.info(
        "%s: %d utterances longer than %s s dropped (%.2f h, %.1f %%); "
        "longest kept %.1f s",
        name,
        len(over),
        max_duration,
        report["dropped_hours"],
        100 * len(over) / max(len(durations), 1),
        report["longest_kept"],
    )
    return dataset, report


def check_disjoint_tasks(datasets, key):
    """Refuses a task (speaker...) found in two splits.

    Arguments
    ---------
    datasets : dict
        Split name to dataset.
    key : str
        The task key (``spk_id``...).

    Raises
    ------
    ValueError
        Naming the splits and (some of) the shared tasks.

    Example
    -------
    >>> check_disjoint_tasks(
    ...     {"train": [{"spk_id": "1"}], "test": [{"spk_id": "2"}]}, "spk_id")
    >>> check_disjoint_tasks(
    ...     {"train": [{"spk_id": "1"}], "test": [{"spk_id": "1"}]},
    ...     "spk_id")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: spk_id '1' in both train and test...
    """
    seen = {}
    for split, dataset in datasets.items():
        for task in sorted(set(task_values(dataset, key))):
            if task in seen and seen[task] != split:
                raise ValueError(
                    f"{key} {task!r} in both {seen[task]} and {split}: the "
                    "roles' tasks must be disjoint (check the manifests)"
                )
            seen[task] = split
