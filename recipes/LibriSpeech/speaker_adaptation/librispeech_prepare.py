"""Data preparation for LibriSpeech k-shot speaker adaptation.

Reads the corpus as it is distributed (``<data_folder>/<split>/<speaker>/
<chapter>/<speaker>-<chapter>-<nnnn>.flac`` and one
``<speaker>-<chapter>.trans.txt`` per chapter) and writes SpeechBrain CSV
manifests to ``save_folder``: one per split, and ``train.csv``,
``dev.csv``, ``test.csv`` merging the splits of each role. They are in
the format of SpeechBrain's own ``librispeech_prepare``
(``ID,duration,wav,spk_id,wrd``, ``spk_id`` = ``<speaker>-<chapter>``),
so that either's manifests serve this recipe: its tasks are speakers, and
``speakers_from_chapters`` makes them so at load time.

Every transcript line is checked here, in seconds, before any training: a
line whose audio file is missing, unreadable or empty, an empty transcript,
characters outside LibriSpeech's (``A-Z``, apostrophe, space). Each bad
line is named with its file and line number, counted and skipped; a
summary is printed and written to ``prepare_summary.json``. Rerunning with
the same settings skips the preparation.

Authors
 * speechbrain-meta developers 2026
"""

import glob
import json
import os
import re

import soundfile as sf
from speechbrain.utils.logger import get_logger

from speechbrain_meta.data.checks import BadInput, check_transcript
from speechbrain_meta.data.manifest import write_manifest

logger = get_logger(__name__)

LABELS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
ROLES = ("train", "dev", "test")
MAX_LOGGED = 20
_CHAPTER = re.compile(r"\d+-\d+")


def prepare_librispeech(
    data_folder,
    save_folder,
    tr_splits=("train-clean-100",),
    dev_splits=("dev-clean",),
    te_splits=("test-clean",),
    skip_prep=False,
):
    """Writes the manifests of the listed splits, unless already done.

    Arguments
    ---------
    data_folder : str
        The folder holding the split folders (``.../LibriSpeech``).
    save_folder : str
        Where the CSVs and ``prepare_summary.json`` go.
    tr_splits, dev_splits, te_splits : list of str
        The splits whose speakers are meta-train, meta-dev and meta-test
        tasks.
    skip_prep : bool
        Do nothing (manifests prepared elsewhere).

    Returns
    -------
    dict or None
        The summary (per split: speakers, utterances, hours, skipped lines
        by reason), or None with ``skip_prep``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_meta.corpora.standins import librispeech_standin
    >>> corpus, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = librispeech_standin(
    ...     corpus, {"dev-clean": 1}, utterances_per_chapter=2)
    >>> summary = prepare_librispeech(  # doctest: +ELLIPSIS
    ...     corpus, out, [], ["dev-clean"], [])
    LibriSpeech preparation:
      dev-clean: 1 speakers, 2 utterances, ... h; skipped none
    >>> summary["splits"]["dev-clean"]["utterances"]
    2
    """
    if skip_prep:
        return None
    config = {
        "data_folder": os.path.abspath(data_folder),
        "splits": {
            "train": list(tr_splits),
            "dev": list(dev_splits),
            "test": list(te_splits),
        },
    }
    summary_path = os.path.join(save_folder, "prepare_summary.json")
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            done = json.load(f)
        if done.get("config") == config and all(
            os.path.isfile(os.path.join(save_folder, f"{r}.csv")) for r in ROLES
        ):
            logger.info("LibriSpeech manifests already in %s", save_folder)
            return done
    os.makedirs(save_folder, exist_ok=True)
    summary = {"config": config, "splits": {}}
    for role in ROLES:
        rows = []
        for split in config["splits"][role]:
            split_rows, summary["splits"][split] = _prepare_split(
                os.path.join(data_folder, split)
            )
            _write_csv(os.path.join(save_folder, f"{split}.csv"), split_rows)
            rows += split_rows
        _write_csv(os.path.join(save_folder, f"{role}.csv"), rows)
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    _print_summary(summary)
    return summary


def speakers_from_chapters(dataset, csv_path):
    """Makes ``spk_id`` the speaker in a manifest of upstream's format.

    SpeechBrain's own ``librispeech_prepare`` writes ``spk_id`` as
    ``<speaker>-<chapter>`` (``103-1240``), and so does this recipe's;
    its tasks are speakers, so such ids become the speaker (``103``), as
    the log says, naming the manifest. A manifest mixing both forms is
    refused.

    Arguments
    ---------
    dataset : DynamicItemDataset
        The loaded manifest (changed in place).
    csv_path : str
        Its file, for the messages.

    Returns
    -------
    int
        The rows converted (0: the manifest already names speakers).

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = DynamicItemDataset({
    ...     "103-1240-0000": {"spk_id": "103-1240"},
    ...     "103-1241-0000": {"spk_id": "103-1241"}})
    >>> speakers_from_chapters(data, "train-clean-100.csv")
    2
    >>> sorted({row["spk_id"] for row in data.data.values()})
    ['103']
    """
    ids = [row["spk_id"] for row in dataset.data.values()]
    chapters = [i for i in ids if _CHAPTER.fullmatch(i)]
    if not chapters:
        return 0
    if len(chapters) != len(ids):
        other = next(i for i in ids if not _CHAPTER.fullmatch(i))
        raise ValueError(
            f"{csv_path}: spk_id mixes speaker-chapter ids ({chapters[0]!r}, "
            f"upstream's format) and others ({other!r})"
        )
    for row in dataset.data.values():
        row["spk_id"] = row["spk_id"].split("-")[0]
    logger.info(
        "%s: spk_id holds speaker-chapter ids (SpeechBrain's "
        "librispeech_prepare format): %d rows converted to speakers, the "
        "tasks of this recipe",
        csv_path,
        len(chapters),
    )
    return len(chapters)


def _prepare_split(split_folder):
    """The manifest rows of one split, and its summary."""
    if not os.path.isdir(split_folder):
        raise FileNotFoundError(
            f"LibriSpeech split folder {split_folder} not found: "
            "data_folder must hold the split folders (e.g. train-clean-100)"
        )
    transcripts = sorted(
        glob.glob(os.path.join(split_folder, "*", "*", "*.trans.txt"))
    )
    if not transcripts:
        raise FileNotFoundError(f"No *.trans.txt under {split_folder}")
    rows, skipped = [], {}
    for trans in transcripts:
        folder = os.path.dirname(trans)
        with open(trans, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                row, reason = _row(folder, line)
                if reason is None:
                    rows.append(row)
                    continue
                n_skipped = sum(len(v) for v in skipped.values())
                skipped.setdefault(reason.split(":")[0], []).append(
                    f"{trans}:{line_no}"
                )
                if n_skipped < MAX_LOGGED:
                    logger.warning("%s:%d: %s: skipped", trans, line_no, reason)
    return rows, {
        "speakers": len({r["spk_id"].split("-")[0] for r in rows}),
        "utterances": len(rows),
        "hours": round(sum(r["duration"] for r in rows) / 3600, 4),
        "skipped": {k: len(v) for k, v in skipped.items()},
        "skipped_lines": skipped,
    }


def _row(folder, line):
    """The manifest row of one transcript line, or why there is none."""
    parts = line.strip().split(" ", 1)
    utt_id = parts[0]
    text = parts[1].strip() if len(parts) > 1 else ""
    wav = os.path.join(folder, utt_id + ".flac")
    if not os.path.isfile(wav):
        return None, f"missing audio file: {wav}"
    try:
        info = sf.info(wav)
    except Exception as err:  # soundfile raises several types
        return None, f"unreadable audio file: {wav} ({err})"
    if info.frames <= 0:
        return None, f"empty audio file: {wav}"
    try:
        text = check_transcript(text, LABELS)
    except BadInput as err:
        return None, err.reason
    return {
        "ID": utt_id,
        "duration": info.frames / info.samplerate,
        "wav": wav,
        "spk_id": "-".join(utt_id.split("-")[:2]),  # as upstream's
        "wrd": text,
    }, None


def _write_csv(path, rows):
    write_manifest(path, rows, ["ID", "duration", "wav", "spk_id", "wrd"])


def _print_summary(summary):
    print("LibriSpeech preparation:")
    for split, s in summary["splits"].items():
        skipped = ", ".join(f"{k}: {v}" for k, v in s["skipped"].items())
        print(
            f"  {split}: {s['speakers']} speakers, {s['utterances']} "
            f"utterances, {s['hours']} h; skipped {skipped or 'none'}"
        )
