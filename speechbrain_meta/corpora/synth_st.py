"""SynthDigits-ST: the SynthDigits speech paired with English translations.

Speech translation from many source languages into one target language,
offline: each SynthDigits utterance (digits read by espeak-ng in its
voice's language, ``speechbrain_meta.corpora.synth``) gets the English text
of what was said, the digit words in order (``"4 1 7"`` read in Greek is
translated ``"four one seven"``). The target is deterministic, so every
utterance has exactly one correct translation, and it shares no symbol
with the source transcript (the digits): a model cannot copy its
transcript, it must produce the target language's words. What is hard
across languages is the speech (each language's digit words, voices,
channels), as in the ASR corpus.

The manifests keep the SynthDigits columns (``wrd`` is the source
transcript, for a multitask CTC branch as upstream's ST recipes train)
and add ``translation``. X -> English: utterances in the target language
itself are left out, as CoVoST 2's X -> En sets have no English source.
The audio is SynthDigits' own (the ``$data_root`` paths are kept), the
language roles too (meta-test languages ``cmn``, ``ja``, ``hu``, ``el``
are never tuned on).

Authors
 * speechbrain-meta developers 2026
"""

import csv
import json
import os

from speechbrain.utils.logger import get_logger

from speechbrain_meta.data.manifest import write_manifest

__all__ = ["DIGIT_WORDS", "english_digit_words", "prepare_synth_digits_st"]

logger = get_logger(__name__)

DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
SPLITS = ("train", "dev", "test", "test_voices")


def english_digit_words(digits):
    """The English translation of a SynthDigits transcript.

    Arguments
    ---------
    digits : str
        Digits separated by spaces, e.g. ``"4 1 7"``.

    Returns
    -------
    str

    Example
    -------
    >>> english_digit_words("4 1 7 0")
    'four one seven zero'
    >>> english_digit_words("4 x")
    Traceback (most recent call last):
    ...
    ValueError: not a digit: 'x' in '4 x'
    """
    words = []
    for token in digits.split():
        if not (len(token) == 1 and token.isdigit()):
            raise ValueError(f"not a digit: {token!r} in {digits!r}")
        words.append(DIGIT_WORDS[int(token)])
    return " ".join(words)


def prepare_synth_digits_st(
    data_folder, save_folder, target_language="en", splits=SPLITS
):
    r"""Writes the SynthDigits-ST manifests from the SynthDigits ones.

    ``<save_folder>/<split>.csv`` for each split: the SynthDigits rows not
    in the target language, with their ``translation``. A row whose
    transcript is not digits stops it with the file and line named (the
    SynthDigits manifests are generated: such a row means a broken file).
    Done once: a rerun with the same sources and settings leaves the
    files as they are (``st.json`` records them).

    Arguments
    ---------
    data_folder : str
        The SynthDigits folder (``prepare_synth_digits``'s ``save_folder``).
    save_folder : str
        Where the ST manifests go.
    target_language : str
        The target language; its own utterances are left out.
    splits : tuple of str
        The manifests to translate.

    Returns
    -------
    dict
        Per split: rows written and rows left out (target language).

    Example
    -------
    >>> import tempfile
    >>> src, dst = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> with open(os.path.join(src, "train.csv"), "w") as f:
    ...     _ = f.write("ID,duration,wav,spk_id,lang,wrd\n"
    ...                 "a,1.0,$data_root/a.wav,s,de,4 1 7\n"
    ...                 "b,1.0,$data_root/b.wav,s,en,2 2\n")
    >>> prepare_synth_digits_st(src, dst, splits=("train",))
    {'train': {'written': 1, 'target_language': 1}}
    >>> with open(os.path.join(dst, "train.csv")) as f:
    ...     f.read().splitlines()[1]
    'a,1.0,$data_root/a.wav,s,de,4 1 7,four one seven'
    """
    sources = {s: os.path.join(data_folder, f"{s}.csv") for s in splits}
    config = {
        "target_language": target_language,
        "sources": {
            s: [os.path.abspath(p), os.path.getmtime(p)]
            for s, p in sources.items()
        },
    }
    summary_path = os.path.join(save_folder, "st.json")
    if os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as fin:
            done = json.load(fin)
        if done.get("config") == json.loads(json.dumps(config)):
            logger.info("SynthDigits-ST manifests exist: %s", save_folder)
            return done["counts"]
    os.makedirs(save_folder, exist_ok=True)
    counts = {}
    for split, source in sources.items():
        rows, left_out = [], 0
        with open(source, newline="", encoding="utf-8") as fin:
            reader = csv.DictReader(fin)
            for line, row in enumerate(reader, start=2):
                if row["lang"] == target_language:
                    left_out += 1
                    continue
                try:
                    row["translation"] = english_digit_words(row["wrd"])
                except ValueError as err:
                    raise ValueError(f"{source}:{line}: {err}") from None
                rows.append(row)
            fields = list(reader.fieldnames) + ["translation"]
        path = os.path.join(save_folder, f"{split}.csv")
        # Whole files only, for concurrent readers.
        write_manifest(path, rows, fields, lineterminator="\n")
        counts[split] = {"written": len(rows), "target_language": left_out}
    tmp = f"{summary_path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fout:
        json.dump({"config": config, "counts": counts}, fout, indent=1)
    os.replace(tmp, summary_path)
    logger.info("SynthDigits-ST manifests: %s", counts)
    return counts
