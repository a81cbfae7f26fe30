"""Data preparation for multilingual meta-ASR on Common Voice.

Reads Common Voice releases as distributed, one folder per language
(``<data_folder>/<lang>/{train,dev,test,validated}.tsv`` and
``<lang>/clips/*.mp3``), with either generation of column names
(``accent``, before 2022; ``accents``, with ``sentence_id``,
``sentence_domain`` and ``variant``, after), and writes SpeechBrain CSV
manifests (``ID,duration,wav,spk_id,lang,accent,wrd``; ``spk_id`` is the
``client_id``): ``train.csv`` (the meta-train languages' ``train.tsv``),
``dev.csv`` (the meta-dev languages' ``dev.tsv``) and ``test.csv`` (the
meta-test languages' ``test.tsv``). With ``accents`` (the accent variant),
the roles are accents of one language instead: the rows of its
``validated.tsv`` go to the role their accent is listed in (accents are
the speakers', so the roles' speakers are disjoint). Clips are decoded,
mixed down to mono and resampled to 16 kHz wav files under
``<save_folder>/wav/<lang>/``.

Sentences are normalised to shared character units: lower case, Unicode
NFC, typographic apostrophes made plain, punctuation and symbols removed.
A row whose clip is missing, unreadable or empty, whose sentence is empty
once normalised, or which holds characters outside ``allowed_characters``
(when given; named) is reported with its file and line, counted and
skipped; a summary is printed and written to ``prepare_summary.json``.
Rerunning with the same settings skips the preparation.

Authors
 * speechbrain-meta developers 2026
"""

import csv
import json
import os
import unicodedata

import soundfile as sf
import torch
import torchaudio
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

ROLES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
MAX_LOGGED = 20
SAMPLE_RATE = 16000


def normalize_sentence(text):
    """A Common Voice sentence in the recipe's character units.

    Arguments
    ---------
    text : str
        The sentence as written.

    Returns
    -------
    str
        Lower case, NFC, letters, marks, digits, apostrophes and single
        spaces.

    Example
    -------
    >>> normalize_sentence("L’été, à «Paris»!")
    "l'été à paris"
    """
    text = unicodedata.normalize("NFC", text).lower()
    text = text.replace("’", "'").replace("`", "'")
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char == "'" or category[0] in "LMN":
            kept.append(char)
        else:
            kept.append(" ")
    return " ".join("".join(kept).split())


def prepare_common_voice(
    data_folder,
    save_folder,
    train_languages,
    dev_languages,
    test_languages,
    accents=None,
    max_utterances_per_language=None,
    allowed_characters=None,
    skip_prep=False,
):
    """Writes the manifests and 16 kHz wav files, unless already done.

    Arguments
    ---------
    data_folder : str
        The folder holding one Common Voice folder per language.
    save_folder : str
        Where the CSVs, ``wav/`` and ``prepare_summary.json`` go.
    train_languages, dev_languages, test_languages : list of str
        Language folders of the meta-train, meta-dev and meta-test tasks
        (disjoint).
    accents : dict, optional
        The accent variant: ``{"language": lang, "train": [...], "dev":
        [...], "test": [...]}`` accents (``accent``/``accents`` values) of
        ``lang``'s ``validated.tsv`` per role; the language lists are then
        not used.
    max_utterances_per_language : int, optional
        Keep the first rows of each language's tsv (low-resource setting).
    allowed_characters : str, optional
        The character units; rows with others are skipped and named.
    skip_prep : bool
        Do nothing (manifests prepared elsewhere).

    Returns
    -------
    dict or None
        The summary (per language: speakers, utterances, hours, skipped
        rows by reason), or None with ``skip_prep``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_meta.data.standins import common_voice_standin
    >>> corpus, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = common_voice_standin(
    ...     corpus, {"es": {"test": 1}}, utterances_per_speaker=2)
    >>> summary = prepare_common_voice(  # doctest: +ELLIPSIS
    ...     corpus, out, [], [], ["es"])
    Common Voice preparation:
      es (test): 1 speakers, 2 utterances, ... h; skipped none
    >>> summary["languages"]["es"]["utterances"]
    2
    """
    if skip_prep:
        return None
    if accents is None:
        roles = {
            "train": list(train_languages),
            "dev": list(dev_languages),
            "test": list(test_languages),
        }
    else:
        roles = {r: list(accents[r]) for r in ROLES}
    overlap = set(roles["train"]) & (set(roles["dev"]) | set(roles["test"]))
    if overlap or set(roles["dev"]) & set(roles["test"]):
        raise ValueError(f"Tasks in several roles: {roles}")
    config = {
        "data_folder": os.path.abspath(data_folder),
        "roles": roles,
        "accents": accents,
        "max_utterances_per_language": max_utterances_per_language,
        "allowed_characters": allowed_characters,
    }
    summary_path = os.path.join(save_folder, "prepare_summary.json")
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            done = json.load(f)
        if done.get("config") == config and all(
            os.path.isfile(os.path.join(save_folder, f"{r}.csv")) for r in ROLES
        ):
            logger.info("Common Voice manifests already in %s", save_folder)
            return done
    os.makedirs(save_folder, exist_ok=True)
    summary = {"config": config, "languages": {}}
    for role, tsv_name in ROLES.items():
        rows = []
        if accents is None:
            parts = [(lang, tsv_name, None) for lang in roles[role]]
        else:
            parts = [(accents["language"], "validated.tsv", roles[role])]
        for lang, tsv, keep in parts:
            name = lang if keep is None else f"{lang}/{role}"
            lang_rows, summary["languages"][name] = _prepare_language(
                os.path.join(data_folder, lang),
                tsv,
                lang,
                os.path.join(save_folder, "wav", lang),
                max_utterances_per_language,
                allowed_characters,
                keep,
            )
            summary["languages"][name]["role"] = role
            rows += lang_rows
        _write_csv(os.path.join(save_folder, f"{role}.csv"), rows)
    with open(summary_path, "w") as f:
        json.dump(summary, f, indent=1)
    _print_summary(summary)
    return summary


def _prepare_language(
    folder, tsv_name, lang, wav_folder, limit, allowed, accents=None
):
    tsv = os.path.join(folder, tsv_name)
    if not os.path.isfile(tsv):
        raise FileNotFoundError(
            f"{tsv} not found: data_folder must hold one Common Voice "
            "folder per language (<lang>/train.tsv, <lang>/clips/)"
        )
    os.makedirs(wav_folder, exist_ok=True)
    rows, skipped = [], {}
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"path", "sentence", "client_id"} - set(reader.fieldnames)
        if missing:
            raise ValueError(f"{tsv}: no column {sorted(missing)}")
        for line_no, record in enumerate(reader, start=2):
            if limit is not None and len(rows) >= limit:
                break
            accent = record.get("accents", record.get("accent")) or ""
            if accents is not None and accent.strip() not in accents:
                continue  # another role's accent
            row, reason = _row(record, folder, lang, wav_folder, allowed)
            if reason is None:
                rows.append(row)
                continue
            n_skipped = sum(len(v) for v in skipped.values())
            skipped.setdefault(reason.split(":")[0], []).append(
                f"{tsv}:{line_no}"
            )
            if n_skipped < MAX_LOGGED:
                logger.warning("%s:%d: %s: skipped", tsv, line_no, reason)
    return rows, {
        "speakers": len({r["spk_id"] for r in rows}),
        "utterances": len(rows),
        "hours": round(sum(r["duration"] for r in rows) / 3600, 4),
        "accents": sorted({r["accent"] for r in rows if r["accent"]}),
        "skipped": {k: len(v) for k, v in skipped.items()},
        "skipped_lines": skipped,
    }


def _row(record, folder, lang, wav_folder, allowed):
    """The manifest row of one tsv row, or why there is none."""
    clip = os.path.join(folder, "clips", record["path"] or "")
    if not record["path"] or not os.path.isfile(clip):
        return None, f"missing clip: {clip}"
    text = normalize_sentence(record["sentence"] or "")
    if not text:
        return None, "empty sentence"
    if allowed is not None:
        outside = sorted({c for c in text if c not in allowed})
        if outside:
            names = ", ".join(repr(c) for c in outside)
            return None, f"characters outside the units: {names}"
    stem = os.path.splitext(record["path"])[0]
    wav = os.path.join(wav_folder, stem + ".wav")
    if not os.path.isfile(wav):
        try:
            samples, rate = sf.read(clip, dtype="float32", always_2d=True)
        except Exception as err:  # soundfile raises several types
            return None, f"unreadable clip: {clip} ({err})"
        if samples.shape[0] == 0:
            return None, f"empty clip: {clip}"
        signal = torch.from_numpy(samples.mean(axis=1))
        if rate != SAMPLE_RATE:
            signal = torchaudio.functional.resample(signal, rate, SAMPLE_RATE)
        tmp = wav + ".tmp.wav"
        sf.write(tmp, signal.numpy(), SAMPLE_RATE)
        os.replace(tmp, wav)  # never a half-written file
    accent = record.get("accents", record.get("accent")) or ""
    return {
        "ID": f"{lang}_{stem}",
        "duration": sf.info(wav).duration,
        "wav": wav,
        "spk_id": record["client_id"],
        "lang": lang,
        "accent": accent.strip(),
        "wrd": text,
    }, None


def _write_csv(path, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f,
            fieldnames=["ID", "duration", "wav", "spk_id", "lang", "accent"]
            + ["wrd"],
        )
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)  # never a half-written manifest


def _print_summary(summary):
    print("Common Voice preparation:")
    for lang, s in summary["languages"].items():
        skipped = ", ".join(f"{k}: {v}" for k, v in s["skipped"].items())
        print(
            f"  {lang} ({s['role']}): {s['speakers']} speakers, "
            f"{s['utterances']} utterances, {s['hours']} h; "
            f"skipped {skipped or 'none'}"
        )
