"""Data preparation for few-shot keyword spotting on Google Speech Commands.

Reads the corpus as it is distributed (v0.01 or v0.02:
``<data_folder>/<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``,
``testing_list.txt``, ``_background_noise_/*.wav``) and writes SpeechBrain
CSV manifests (``ID,duration,wav,spk_id,command``) to ``save_folder``.

Few-shot splits are by class (Vinyals et al., 2016): the meta-train,
meta-dev and meta-test words are disjoint (by default the ten standard
commands are the meta-test classes). They are disjoint by speaker too: the
corpus's own lists, which split by speaker, give ``train.csv`` the
meta-train words' clips in neither list, ``dev.csv`` the meta-dev words'
clips of ``validation_list.txt`` and ``test.csv`` the meta-test words'
clips of ``testing_list.txt``. ``noise.csv`` lists the background noise
recordings (``ID,duration,wav,wav_format,wav_opts``) for SpeechBrain's
``AddNoise``.

Every clip is checked here, in seconds, before any training: a list line
naming a missing clip, an unreadable or empty file, another sample rate,
more than one channel. Each bad one is named with its file (and list line),
counted and skipped; a summary is printed and written to
``prepare_summary.json``. Rerunning with the same settings skips the
preparation.

Authors
 * speechbrain-meta developers 2026
"""

import glob
import json
import os

import soundfile as sf
from speechbrain.utils.logger import get_logger

from speechbrain_meta.data.manifest import write_manifest

logger = get_logger(__name__)

# The ten standard commands: the meta-test classes by default.
COMMANDS = "yes no up down left right on off stop go".split()
DEV_WORDS = ["bed", "bird", "cat", "dog", "happy"]
SAMPLE_RATE = 16000
NOISE = "_background_noise_"
MAX_LOGGED = 20
FIELDS = {
    "train": ["ID", "duration", "wav", "spk_id", "command"],
    "dev": ["ID", "duration", "wav", "spk_id", "command"],
    "test": ["ID", "duration", "wav", "spk_id", "command"],
    # SpeechBrain's extended CSV, as AddNoise reads it.
    "noise": ["ID", "duration", "wav", "wav_format", "wav_opts"],
}


def prepare_GSC(
    data_folder,
    save_folder,
    test_words=COMMANDS,
    dev_words=DEV_WORDS,
    skip_prep=False,
):
    """Writes the class-disjoint few-shot manifests, unless already done.

    Arguments
    ---------
    data_folder : str
        The corpus folder (holding the word folders and the lists).
    save_folder : str
        Where the CSVs and ``prepare_summary.json`` go.
    test_words : list of str
        Meta-test classes.
    dev_words : list of str
        Meta-dev classes; every other word folder is a meta-train class.
    skip_prep : bool
        Do nothing (manifests prepared elsewhere).

    Returns
    -------
    dict or None
        The summary (per split: classes, clips, speakers, skipped clips by
        reason), or None with ``skip_prep``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_meta.corpora.standins import speech_commands_standin
    >>> corpus, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = speech_commands_standin(corpus, ["yes", "no", "cat", "tree"],
    ...     speakers=3, validation_speakers=1, testing_speakers=1)
    >>> summary = prepare_GSC(  # doctest: +ELLIPSIS
    ...     corpus, out, ["yes", "no"], ["cat"])
    Google Speech Commands preparation:
      train: 1 classes, 1 speakers, 1 clips, ... under 1 s; skipped none
      dev: 1 classes, 1 speakers, 1 clips, ... under 1 s; skipped none
      test: 2 classes, 1 speakers, 2 clips, ... under 1 s; skipped none
      noise: 6 recordings, 6.0 min
    """
    if skip_prep:
        return None
    test_words, dev_words = list(test_words), list(dev_words)
    config = {
        "data_folder": os.path.abspath(data_folder),
        "test_words": test_words,
        "dev_words": dev_words,
    }
    summary_path = os.path.join(save_folder, "prepare_summary.json")
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            done = json.load(f)
        if done.get("config") == config and all(
            os.path.isfile(os.path.join(save_folder, f"{s}.csv"))
            for s in FIELDS
        ):
            logger.info("Speech Commands manifests in %s", save_folder)
            return done
    words = sorted(
        d
        for d in os.listdir(data_folder)
        if os.path.isdir(os.path.join(data_folder, d)) and d[0] not in "_."
    )
    if not words:
        raise FileNotFoundError(
            f"No word folders in {data_folder}: data_folder must hold the "
            "Speech Commands word folders (yes/, no/, ...)"
        )
    overlap = set(test_words) & set(dev_words)
    missing = [w for w in test_words + dev_words if w not in words]
    if overlap or missing:
        raise ValueError(
            f"Meta-test and meta-dev words must be disjoint word folders of "
            f"{data_folder}: shared {sorted(overlap)}, missing {missing}"
        )
    held = set(test_words) | set(dev_words)
    split_words = {
        "train": [w for w in words if w not in held],
        "dev": dev_words,
        "test": test_words,
    }
    listed, skipped = {}, {}
    for split, list_name in (
        ("dev", "validation_list.txt"),
        ("test", "testing_list.txt"),
    ):
        listed[split] = _read_list(
            data_folder, list_name, skipped.setdefault(split, {})
        )
    in_lists = {c for clips in listed.values() for c, _ in clips}
    clips = {
        "train": [
            (f"{w}/{os.path.basename(p)}", None)
            for w in split_words["train"]
            for p in sorted(glob.glob(os.path.join(data_folder, w, "*.wav")))
            if f"{w}/{os.path.basename(p)}" not in in_lists
        ],
        "dev": [c for c in listed["dev"] if c[0].split("/")[0] in dev_words],
        "test": [c for c in listed["test"] if c[0].split("/")[0] in test_words],
    }
    os.makedirs(save_folder, exist_ok=True)
    summary = {"config": config, "splits": {}}
    for split, split_clips in clips.items():
        bad = skipped.setdefault(split, {})
        rows = []
        for clip, where in split_clips:
            row, reason = _row(data_folder, clip)
            if reason is None:
                rows.append(row)
            else:
                _skip(bad, reason, where or clip)
        write_manifest(
            os.path.join(save_folder, f"{split}.csv"), rows, FIELDS[split]
        )
        summary["splits"][split] = {
            "classes": len({r["command"] for r in rows}),
            "speakers": len({r["spk_id"] for r in rows}),
            "clips": len(rows),
            # Real clips are often cut short of 1 s (the recipe pads them).
            "shorter_than_1s": sum(r["duration"] < 1.0 for r in rows),
            "shortest_s": min((r["duration"] for r in rows), default=None),
            "skipped": {k: len(v) for k, v in bad.items()},
            "skipped_clips": bad,
        }
    noise_rows = []
    for path in sorted(glob.glob(os.path.join(data_folder, NOISE, "*.wav"))):
        row, reason = _row(data_folder, os.path.relpath(path, data_folder))
        if reason is None:
            noise_rows.append(
                {k: row[k] for k in ("ID", "duration", "wav")}
                | {"wav_format": "wav", "wav_opts": ""}
            )
        else:
            _skip(skipped.setdefault("noise", {}), reason, path)
    write_manifest(
        os.path.join(save_folder, "noise.csv"), noise_rows, FIELDS["noise"]
    )
    summary["noise_recordings"] = len(noise_rows)
    summary["noise_minutes"] = round(
        sum(r["duration"] for r in noise_rows) / 60, 2
    )
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    _print_summary(summary)
    return summary


def _read_list(data_folder, list_name, bad):
    """``(clip, "list:line")`` of a list file; missing clips are skipped."""
    path = os.path.join(data_folder, list_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: data_folder must be the Speech Commands "
            "folder holding validation_list.txt and testing_list.txt"
        )
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            clip = line.strip()
            if not clip:
                continue
            where = f"{path}:{line_no}"
            if not os.path.isfile(os.path.join(data_folder, clip)):
                _skip(bad, f"missing clip: {clip}", where)
                continue
            out.append((clip, where))
    return out


def _skip(bad, reason, where):
    n_skipped = sum(len(v) for v in bad.values())
    bad.setdefault(reason.split(":")[0], []).append(where)
    if n_skipped < MAX_LOGGED:
        logger.warning("%s: %s: skipped", where, reason)


def _row(data_folder, clip):
    """The manifest row of one clip (``<word>/<file>.wav``), or why not."""
    wav = os.path.join(data_folder, clip)
    try:
        info = sf.info(wav)
    except Exception as err:  # soundfile raises several types
        return None, f"unreadable audio file: {wav} ({err})"
    if info.frames <= 0:
        return None, f"empty audio file: {wav}"
    if info.samplerate != SAMPLE_RATE:
        return None, f"sample rate {info.samplerate} (not 16000): {wav}"
    if info.channels != 1:
        return None, f"{info.channels} channels (not mono): {wav}"
    word, name = clip.split("/")[-2:]
    stem = os.path.splitext(name)[0]
    return {
        "ID": f"{word}_{stem}",
        "duration": info.frames / info.samplerate,
        "wav": wav,
        "spk_id": stem.split("_nohash_")[0],
        "command": word,
    }, None


def _print_summary(summary):
    print("Google Speech Commands preparation:")
    for split, s in summary["splits"].items():
        skipped = ", ".join(f"{k}: {v}" for k, v in s["skipped"].items())
        print(
            f"  {split}: {s['classes']} classes, {s['speakers']} speakers, "
            f"{s['clips']} clips, {s['shorter_than_1s']} under 1 s; "
            f"skipped {skipped or 'none'}"
        )
    print(
        f"  noise: {summary['noise_recordings']} recordings, "
        f"{summary['noise_minutes']} min"
    )
