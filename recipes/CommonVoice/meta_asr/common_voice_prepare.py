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
the roles are accents of one language instead, read from its
``validated.tsv`` (the rules are in ``accent_role``).

The preparation, in order:

1. Every tsv row is read (text only). Sentences are normalised
   (``normalize_sentence``). A row whose ``path`` is empty or whose clip
   is missing, or whose sentence is empty once normalised, is skipped.
2. Roles are made disjoint (``disjoint_roles``): a ``client_id`` found in
   several roles keeps only the rows of the role holding most of its rows
   (ties: the later role, test before dev before train); a meta-train row
   whose sentence is also read in a meta-dev or meta-test role is dropped.
3. The output units come from the data (``data_units``): a character is a
   unit if it makes at least ``min_character_share`` of some language's
   (accent's) transcript characters; rows holding rarer characters are
   skipped, their characters named. ``allowed_characters`` fixes the
   units instead.
4. At most ``max_utterances_per_language`` rows per language (accent) are
   kept: a sample drawn with ``seed``, not the first rows of the file.
5. The kept rows' clips are decoded, mixed down to mono and resampled to
   16 kHz wav files under ``<save_folder>/wav/<lang>/``, in parallel
   (SpeechBrain's ``parallel_map``); a clip that is unreadable or empty is
   skipped and the next row of the sample takes its place. mp3 support of
   the installed libsndfile is checked on the first clip before anything
   is converted.

Every skipped row is named with its tsv file and line (the first
``MAX_LOGGED`` in the log, all of them in ``prepare_summary.json``) and
counted by reason, per language; a summary is printed. Rerunning with the
same settings skips the preparation, and a rerun after a kill converts
only the clips not converted yet (each wav file is written under a
temporary name and renamed). Two processes preparing into the same folder
take turns (a lock file): the second finds the work done.

Authors
 * speechbrain-meta developers 2026
"""

import collections
import contextlib
import csv
import fcntl
import json
import math
import os
import random
import unicodedata

import soundfile as sf
from scipy.signal import resample_poly
from speechbrain.utils.logger import get_logger
from speechbrain.utils.parallel import parallel_map

from speechbrain_meta.data.manifest import write_manifest

logger = get_logger(__name__)

ROLES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}
# The CoVoST 2 splits each role reads (speech translation): its train set
# is "train" plus "train_covost" (CoVoST 1's extra training rows).
COVOST_SPLITS = {
    "train": {"train", "train_covost"},
    "dev": {"dev"},
    "test": {"test"},
}
MAX_LOGGED = 20
SAMPLE_RATE = 16000
# Apostrophe look-alikes written for the plain one: right and left single
# quotation marks, modifier letter apostrophe (U+02BC), grave, acute,
# prime.
APOSTROPHES = "\u2019\u2018\u02bc`\u00b4\u2032"
# Romanian's s and t with a comma below, typed with a cedilla on keyboards
# without them: one letter each once normalised.
COMMA_BELOW = {"ro": str.maketrans("\u015f\u0163\u015e\u0162", "șțȘȚ")}
MIDDLE_DOT = "\u00b7"  # Catalan's ela geminada (l·l), inside a word


def normalize_sentence(text, language=None):
    """A Common Voice sentence in the recipe's character units.

    Lower case and Unicode NFC; apostrophe look-alikes (``’ ‘ ʼ`` ...) are
    the plain apostrophe, kept inside words and dropped at their edges
    (quotation marks); a middle dot between two letters (Catalan
    ``col·legi``) is kept; Romanian's cedilla ``ş ţ`` are its comma-below
    letters; other punctuation and symbols are spaces.

    Arguments
    ---------
    text : str
        The sentence as written.
    language : str, optional
        Its language code (for the language-specific rule above).

    Returns
    -------
    str
        Letters, marks, digits, inner apostrophes and middle dots, and
        single spaces.

    Example
    -------
    >>> normalize_sentence("L’été, à «Paris»!")
    "l'été à paris"
    >>> normalize_sentence("‘Il·lusió’, col·legi · casa", "ca")
    'il·lusió col·legi casa'
    >>> normalize_sentence("Şcoală şi ţară", "ro")
    'școală și țară'
    """
    text = unicodedata.normalize("NFC", text).lower()
    if language in COMMA_BELOW:
        text = text.translate(COMMA_BELOW[language])
    for char in APOSTROPHES:
        text = text.replace(char, "'")
    kept = []
    for i, char in enumerate(text):
        category = unicodedata.category(char)
        if char == "'" or category[0] in "LMN":
            kept.append(char)
        elif char == MIDDLE_DOT and _letters_around(text, i):
            kept.append(char)
        else:
            kept.append(" ")
    words = "".join(kept).split()
    words = [w.strip("'" + MIDDLE_DOT) for w in words]
    return " ".join(w for w in words if w)


def _letters_around(text, i):
    return (
        0 < i < len(text) - 1
        and text[i - 1].isalpha()
        and text[i + 1].isalpha()
    )


def split_accents(field, known=()):
    """The accents of one ``accent``/``accents`` field.

    Releases since 2025 separate a speaker's accents with ``|``; earlier
    ones with commas, which accent names also contain (``India and South
    Asia (India, Pakistan, Sri Lanka)``). The rule: a field with ``|`` is
    split there; otherwise at the commas outside parentheses, and the
    ``known`` names (the accents a recipe asks for, which may hold commas
    of their own) are matched as whole runs of those parts.

    Arguments
    ---------
    field : str
        The field as read.
    known : iterable of str
        Accent names to match whole.

    Returns
    -------
    list of str
        The accents, in field order (empty for an empty field).

    Example
    -------
    >>> split_accents("United States English, Midwestern United States English")
    ['United States English', 'Midwestern United States English']
    >>> split_accents("India and South Asia (India, Pakistan, Sri Lanka)")
    ['India and South Asia (India, Pakistan, Sri Lanka)']
    >>> split_accents("England English|Northern English, Yorkshire")
    ['England English', 'Northern English, Yorkshire']
    >>> split_accents("Hong Kong, Cantonese, London", ["Cantonese, London"])
    ['Hong Kong', 'Cantonese, London']
    """
    field = (field or "").strip()
    if not field:
        return []
    if "|" in field:
        return [p.strip() for p in field.split("|") if p.strip()]
    parts = _top_level_commas(field)
    known_parts = sorted(
        (_top_level_commas(name) for name in known),
        key=len,
        reverse=True,
    )
    accents, i = [], 0
    while i < len(parts):
        for name in known_parts:
            if len(name) > 1 and parts[i : i + len(name)] == name:
                accents.append(", ".join(name))
                i += len(name)
                break
        else:
            accents.append(parts[i])
            i += 1
    return accents


def _top_level_commas(text):
    parts, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth <= 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def accent_role(row_accents, role_accents):
    """The role a row belongs to in the accent variant, or why none.

    A row belongs to a role when at least one of its accents is one of
    that role's, and none is another role's: a speaker who gave accents
    of two roles (``England English, Scottish English``) is in neither.

    Arguments
    ---------
    row_accents : list of str
        The row's accents (``split_accents``).
    role_accents : dict
        Role to the list of its accents.

    Returns
    -------
    tuple
        ``(role, None)``, or ``(None, reason)``.

    Example
    -------
    >>> roles = {"train": ["A"], "dev": ["B"], "test": ["C"]}
    >>> accent_role(["A", "Midwestern"], roles)
    ('train', None)
    >>> accent_role(["A", "C"], roles)
    (None, 'accents of several roles')
    >>> accent_role([], roles)
    (None, 'no accent given')
    """
    if not row_accents:
        return None, "no accent given"
    roles = {
        role
        for role, accents in role_accents.items()
        if set(row_accents) & set(accents)
    }
    if len(roles) > 1:
        return None, "accents of several roles"
    if not roles:
        return None, "accent of no role"
    return roles.pop(), None


def prepare_common_voice(
    data_folder,
    save_folder,
    train_languages,
    dev_languages,
    test_languages,
    accents=None,
    max_utterances_per_language=None,
    allowed_characters=None,
    min_character_share=1e-4,
    seed=1986,
    num_workers=None,
    skip_prep=False,
    translations=None,
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
        [...], "test": [...]}`` accents of ``lang``'s ``validated.tsv``
        per role; the language lists are then not used.
    max_utterances_per_language : int, optional
        Keep a seeded sample of this many rows per language (accent).
    allowed_characters : str, optional
        The character units; by default they come from the data.
    min_character_share : float
        A character is a unit if it is at least this share of one
        language's (accent's) transcript characters.
    seed : int
        Of the sample.
    num_workers : int, optional
        Processes converting clips (default: the CPUs available; 1: in
        this process).
    skip_prep : bool
        Do nothing (manifests prepared elsewhere).
    translations : dict, optional
        Speech translation, CoVoST 2 (``{"folder": F, "target": "en"}``):
        each language's rows are those of its ``validated.tsv`` that
        ``F/covost_v2.<lang>_<target>.tsv`` puts in the role's split
        (``COVOST_SPLITS``), with their ``translation`` (``read_covost``);
        the manifests get a ``translation`` column.

    Returns
    -------
    dict or None
        The summary: ``units`` (a string), ``languages`` (per language or
        accent role: speakers, utterances, hours, skipped rows by reason
        and their lines), ``roles`` (what made them disjoint) and, for the
        accent variant, ``accent_inventory``; None with ``skip_prep``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_meta.corpora.standins import common_voice_standin
    >>> corpus, out = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = common_voice_standin(
    ...     corpus, {"es": {"test": 1}}, utterances_per_speaker=2)
    >>> summary = prepare_common_voice(  # doctest: +ELLIPSIS
    ...     corpus, out, [], [], ["es"], num_workers=1)
    Common Voice preparation (... units: ...):
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
        "min_character_share": min_character_share,
        "seed": seed,
    }
    if translations is not None:
        if accents is not None:
            raise ValueError("translations: CoVoST 2 has no accent variant")
        config["translations"] = {
            "folder": os.path.abspath(translations["folder"]),
            "target": translations.get("target", "en"),
        }
    os.makedirs(save_folder, exist_ok=True)
    with _lock(os.path.join(save_folder, ".prepare.lock")):
        done = _done(save_folder, config)
        if done is not None:
            logger.info("Common Voice manifests already in %s", save_folder)
            return done
        summary = _prepare(
            data_folder, save_folder, config, accents, num_workers
        )
        with open(os.path.join(save_folder, "prepare_summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
    _print_summary(summary)
    return summary


@contextlib.contextmanager
def _lock(path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _done(save_folder, config):
    path = os.path.join(save_folder, "prepare_summary.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        done = json.load(f)
    csvs = all(
        os.path.isfile(os.path.join(save_folder, f"{r}.csv")) for r in ROLES
    )
    return done if done.get("config") == config and csvs else None


def _prepare(data_folder, save_folder, config, accents, num_workers):
    """Steps 1-5 of the module docstring; returns the summary."""
    summary = {"config": config, "languages": {}}
    skipped = collections.defaultdict(dict)  # task -> reason -> lines
    rows = []
    translations = config.get("translations")
    if accents is None:
        for role, languages in config["roles"].items():
            for lang in languages:
                if translations is None:
                    tsv = _tsv(data_folder, lang, ROLES[role])
                    read = _read_tsv(tsv, lang, skipped[lang])
                else:
                    read = _translated_rows(
                        data_folder, translations, lang, role, skipped[lang]
                    )
                for row in read:
                    rows.append(dict(row, role=role, task=lang))
    else:
        lang = accents["language"]
        tsv = _tsv(data_folder, lang, "validated.tsv")
        rows, summary["accent_inventory"] = _accent_rows(
            tsv, lang, config["roles"], skipped
        )
        read = skipped[f"{lang}/validated.tsv"]
        summary["accent_inventory"]["skipped"] = {
            k: len(v) for k, v in read.items()
        }
        summary["accent_inventory"]["skipped_lines"] = read
    rows, summary["roles"] = disjoint_roles(rows, skipped)
    units = config["allowed_characters"]
    if units is None:
        units = data_units(rows, config["min_character_share"])
    rows = _within_units(rows, units, skipped)
    summary["units"] = units
    tasks = collections.defaultdict(list)
    for row in rows:
        tasks[row["task"]].append(row)
    _check_audio_support(rows)
    for role in ROLES:
        manifest = []
        for task in _role_tasks(config, accents, role):
            kept = _convert(
                _sample(tasks[task], config, task),
                os.path.join(save_folder, "wav", task.split("/")[0]),
                config["max_utterances_per_language"],
                skipped[task],
                num_workers,
            )
            summary["languages"][task] = _task_summary(
                kept, skipped[task], role
            )
            manifest += kept
        _write_csv(os.path.join(save_folder, f"{role}.csv"), manifest)
    return summary


def _role_tasks(config, accents, role):
    if accents is None:
        return config["roles"][role]
    return [f"{accents['language']}/{role}"]


def _tsv(data_folder, lang, name):
    tsv = os.path.join(data_folder, lang, name)
    if not os.path.isfile(tsv):
        raise FileNotFoundError(
            f"{tsv} not found: data_folder must hold one Common Voice "
            "folder per language (<lang>/train.tsv, <lang>/clips/)"
        )
    return tsv


def _skip(skipped, reason, where):
    n_skipped = sum(len(v) for v in skipped.values())
    skipped.setdefault(reason.split(":")[0], []).append(where)
    if n_skipped < MAX_LOGGED:
        logger.warning("%s: %s: skipped", where, reason)


def _read_tsv(tsv, lang, skipped, keep=None, seen=None):
    """The rows of one tsv with a clip on disk and a sentence (step 1);
    with ``keep`` (a set of clip names), those rows only; ``seen`` (a set)
    gets every clip name the file lists.
    """
    folder = os.path.dirname(tsv)
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"path", "sentence", "client_id"} - set(
            reader.fieldnames or ()
        )
        if missing:
            raise ValueError(f"{tsv}: no column {sorted(missing)}")
        for line_no, record in enumerate(reader, start=2):
            where = f"{tsv}:{line_no}"
            path = record["path"] or ""
            if seen is not None:
                seen.add(path)
            if keep is not None and path not in keep:
                continue
            clip = os.path.join(folder, "clips", path)
            if not path or not os.path.isfile(clip):
                _skip(skipped, f"missing clip: {clip}", where)
                continue
            text = normalize_sentence(record["sentence"] or "", lang)
            if not text:
                _skip(skipped, "empty sentence", where)
                continue
            field = record.get("accents", record.get("accent")) or ""
            yield {
                "where": where,
                "path": path,
                "clip": clip,
                "lang": lang,
                "client": record["client_id"],
                "accent_field": field.strip(),
                "wrd": text,
            }


def read_covost(tsv, splits, skipped):
    r"""The translations of a CoVoST 2 tsv in some of its splits.

    The file is tab-separated with a header (``path``, ``sentence``,
    ``translation``, ``client_id``, ``split``) and no quoting: a ``"`` in
    a sentence is a character, as CoVoST's own loaders read it. A row
    with an empty translation is skipped (named with its line).

    Arguments
    ---------
    tsv : str
        ``covost_v2.<source>_<target>.tsv``.
    splits : iterable of str
        The split values kept (e.g. ``train`` and ``train_covost``).
    skipped : dict
        Reason to the skipped rows' places.

    Returns
    -------
    dict
        Clip name (``path``) to ``(translation, place)``.

    Example
    -------
    >>> import tempfile
    >>> tsv = os.path.join(tempfile.mkdtemp(), "covost_v2.de_en.tsv")
    >>> with open(tsv, "w") as f:
    ...     _ = f.write("path\tsentence\ttranslation\tclient_id\tsplit\n"
    ...                 'a.mp3\tDas "Haus".\tThe "house".\tc\ttrain\n'
    ...                 "b.mp3\tEins.\t\tc\ttrain\n"
    ...                 "c.mp3\tZwei.\tTwo.\tc\ttest\n")
    >>> skipped = {}
    >>> read_covost(tsv, {"train"}, skipped)["a.mp3"][0]
    'The "house".'
    >>> list(skipped)
    ['empty translation']
    """
    kept = {}
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"path", "translation", "split"} - set(
            reader.fieldnames or ()
        )
        if missing:
            raise ValueError(f"{tsv}: no column {sorted(missing)}")
        for line_no, record in enumerate(reader, start=2):
            if record["split"] not in splits:
                continue
            where = f"{tsv}:{line_no}"
            translation = " ".join((record["translation"] or "").split())
            if not translation:
                _skip(skipped, "empty translation", where)
                continue
            kept[record["path"]] = (translation, where)
    return kept


def _translated_rows(data_folder, translations, lang, role, skipped):
    """The rows of ``lang``'s ``validated.tsv`` in the role's CoVoST 2
    split, with their translations (step 1 of speech translation).
    """
    name = f"covost_v2.{lang}_{translations['target']}.tsv"
    tsv = os.path.join(translations["folder"], name)
    if not os.path.isfile(tsv):
        raise FileNotFoundError(
            f"{tsv} not found: translations['folder'] must hold CoVoST 2's "
            "covost_v2.<source>_<target>.tsv files (extracted)"
        )
    covost = read_covost(tsv, COVOST_SPLITS[role], skipped)
    validated = _tsv(data_folder, lang, "validated.tsv")
    in_release = set()
    for row in _read_tsv(validated, lang, skipped, set(covost), in_release):
        yield dict(row, translation=covost[row["path"]][0])
    # CoVoST 2 was made from Common Voice 4: a later release may have
    # dropped (invalidated) some of its clips.
    for path in sorted(set(covost) - in_release):
        _skip(skipped, "not in validated.tsv", covost[path][1])


def _accent_rows(tsv, lang, role_accents, skipped):
    """The accent variant's rows with their role, and the inventory."""
    known = [a for accents in role_accents.values() for a in accents]
    inventory = collections.Counter()
    rows, unassigned = [], collections.Counter()
    for row in _read_tsv(tsv, lang, skipped[f"{lang}/validated.tsv"]):
        accents = split_accents(row["accent_field"], known)
        inventory.update(accents)
        role, reason = accent_role(accents, role_accents)
        if role is None:
            unassigned[reason] += 1
            continue
        rows.append(dict(row, role=role, task=f"{lang}/{role}"))
    if not inventory:
        raise ValueError(
            f"{tsv} has no accent data (every `accents`/`accent` field is "
            "empty, as in some releases, e.g. Common Voice 12's English): "
            "use a release with accents"
        )
    absent = [a for a in known if not inventory[a]]
    if absent:
        common = ", ".join(f"{a!r}" for a, _ in inventory.most_common(15))
        raise ValueError(
            f"{tsv}: no row has the accents {absent} (the names change "
            f"between releases); its most frequent accents: {common}"
        )
    logger.info(
        "%s: %d rows assigned to roles; not assigned: %s",
        tsv,
        len(rows),
        dict(unassigned),
    )
    return rows, {
        "accents": dict(inventory.most_common()),
        "rows_not_assigned": dict(unassigned),
    }


def disjoint_roles(rows, skipped):
    """Makes the roles' speakers and sentences disjoint (step 2).

    A ``client_id`` in several roles (users change their accent, and
    contribute to several languages) keeps the rows of the role holding
    most of them (ties: test, then dev); a meta-train row whose sentence
    is also read in a meta-dev or meta-test role is dropped (a sentence
    of ``validated.tsv`` is read by many speakers). Dropped rows are
    added to ``skipped`` (per task).

    Arguments
    ---------
    rows : list of dict
        With ``role``, ``task``, ``client``, ``wrd`` and ``where``.
    skipped : dict
        Task to reason to the skipped rows' places.

    Returns
    -------
    rows : list of dict
        Those kept.
    report : dict
        Speakers found in several roles, rows dropped for each reason.

    Example
    -------
    >>> rows = [
    ...     {"role": "train", "client": "a", "wrd": "x", "task": "t"},
    ...     {"role": "train", "client": "a", "wrd": "y", "task": "t"},
    ...     {"role": "test", "client": "a", "wrd": "z", "task": "u"},
    ...     {"role": "train", "client": "b", "wrd": "z", "task": "t"},
    ...     {"role": "test", "client": "c", "wrd": "z", "task": "u"},
    ... ]
    >>> for i, row in enumerate(rows):
    ...     row["where"] = f"f.tsv:{i + 2}"
    >>> kept, report = disjoint_roles(rows, {"t": {}, "u": {}})
    >>> [(r["client"], r["wrd"]) for r in kept]
    [('a', 'x'), ('a', 'y'), ('c', 'z')]
    >>> sorted(report.values())
    [1, 1, 1]
    """
    order = {"train": 0, "dev": 1, "test": 2}
    per_client = collections.defaultdict(collections.Counter)
    for row in rows:
        per_client[row["client"]][row["role"]] += 1
    home = {
        client: max(counts, key=lambda r: (counts[r], order[r]))
        for client, counts in per_client.items()
    }
    evaluation_sentences = {
        row["wrd"]
        for row in rows
        if row["role"] != "train" and home[row["client"]] == row["role"]
    }
    kept = []
    report = {
        "speakers_in_several_roles": sum(
            len(c) > 1 for c in per_client.values()
        ),
        "speaker_in_another_role": 0,
        "sentence_read_in_an_evaluation_role": 0,
    }
    for row in rows:
        task_skipped = skipped.setdefault(row["task"], {})
        if home[row["client"]] != row["role"]:
            reason = "speaker in another role"
        elif row["role"] == "train" and row["wrd"] in evaluation_sentences:
            reason = "sentence read in an evaluation role"
        else:
            kept.append(row)
            continue
        report[reason.replace(" ", "_")] += 1
        _skip(task_skipped, reason, row["where"])
    return kept, report


def data_units(rows, min_share=1e-4):
    """The output units: characters frequent in some task (step 3).

    Arguments
    ---------
    rows : list of dict
        With ``task`` and ``wrd``.
    min_share : float
        A character is a unit if it is at least this share of one task's
        transcript characters (space included).

    Returns
    -------
    str
        The units, space first, then in code point order.

    Example
    -------
    >>> rows = [{"task": "ro", "wrd": "casă apă"}] * 50 + [
    ...     {"task": "ro", "wrd": "øre"}]
    >>> data_units(rows, min_share=0.01)
    ' acpsă'
    """
    counts = collections.defaultdict(collections.Counter)
    for row in rows:
        counts[row["task"]].update(row["wrd"])
    units = set(" ")
    for chars in counts.values():
        total = sum(chars.values())
        units.update(c for c, n in chars.items() if n >= min_share * total)
    return " " + "".join(sorted(units - {" "}))


def _within_units(rows, units, skipped):
    allowed, kept = set(units), []
    for row in rows:
        outside = sorted(set(row["wrd"]) - allowed)
        if outside:
            names = ", ".join(repr(c) for c in outside)
            _skip(
                skipped[row["task"]],
                f"characters outside the units: {names}",
                row["where"],
            )
            continue
        kept.append(row)
    return kept


def _sample(rows, config, task):
    """The task's rows in a seeded order (step 4): the sample first."""
    rows = list(rows)
    random.Random(f"{config['seed']}/{task}").shuffle(rows)
    return rows


def _check_audio_support(rows, probes=5):
    """Fails early when libsndfile cannot read the corpus's clips.

    Before hours of conversion: mp3 needs libsndfile 1.1.0 or later. If
    none of the first ``probes`` clips reads, the installation (not the
    clips) is the likely cause; one bad clip alone is skipped later.
    """
    if not rows:
        return
    if any(r["clip"].lower().endswith(".mp3") for r in rows[:probes]) and (
        "MP3" not in sf.available_formats()
    ):
        raise RuntimeError(
            f"libsndfile {sf.__libsndfile_version__} cannot read mp3 (it "
            "needs 1.1.0 or later): pip install 'soundfile>=0.12'"
        )
    errors = [_convert_one((r["clip"], None))[0] for r in rows[:probes]]
    if all(errors):
        raise RuntimeError(
            f"None of the first {len(errors)} clips reads with libsndfile "
            f"{sf.__libsndfile_version__} (first: {rows[0]['where']}: "
            f"{errors[0]}); check its mp3 support (1.1.0 or later)"
        )


def _convert(rows, wav_folder, limit, skipped, num_workers):
    """Converts clips in sample order until ``limit`` rows are kept."""
    os.makedirs(wav_folder, exist_ok=True)
    kept, start = [], 0
    while start < len(rows) and (limit is None or len(kept) < limit):
        need = len(rows) - start if limit is None else limit - len(kept)
        batch = rows[start : start + need]
        start += len(batch)
        jobs = [(r["clip"], _wav_path(wav_folder, r["clip"])) for r in batch]
        if num_workers == 1 or len(jobs) < 16:
            results = map(_convert_one, jobs)
        else:
            results = parallel_map(
                _convert_one, jobs, process_count=num_workers
            )
        for row, (_, wav), (error, duration) in zip(batch, jobs, results):
            if error is not None:
                _skip(skipped, error, row["where"])
                continue
            kept.append(_manifest_row(row, wav, duration))
    return kept


def _wav_path(wav_folder, clip):
    stem = os.path.splitext(os.path.basename(clip))[0]
    return os.path.join(wav_folder, stem + ".wav")


def _convert_one(job):
    """``(error, duration)`` of converting one clip to a 16 kHz wav.

    Runs in a worker process: soundfile and scipy only (no torch, whose
    thread pools do not survive a fork).
    """
    clip, wav = job
    if wav is not None and os.path.isfile(wav):
        return None, sf.info(wav).duration
    try:
        samples, rate = sf.read(clip, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types
        return f"unreadable clip: {clip} ({err})", None
    if samples.shape[0] == 0:
        return f"empty clip: {clip}", None
    if wav is None:
        return None, samples.shape[0] / rate
    signal = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        signal = resample_poly(signal, SAMPLE_RATE // g, rate // g)
    tmp = f"{wav}.{os.getpid()}.tmp.wav"
    sf.write(tmp, signal.astype("float32"), SAMPLE_RATE)
    os.replace(tmp, wav)  # never a half-written file
    return None, len(signal) / SAMPLE_RATE


def _manifest_row(row, wav, duration):
    stem = os.path.splitext(os.path.basename(wav))[0]
    return {
        "ID": f"{row['lang']}_{stem}",
        "duration": duration,
        "wav": wav,
        "spk_id": row["client"],
        "lang": row["lang"],
        "accent": row["accent_field"],
        "wrd": row["wrd"],
        **({"translation": row["translation"]} if "translation" in row else {}),
    }


def _task_summary(rows, skipped, role):
    characters = collections.Counter()
    for row in rows:
        characters.update(row["wrd"])
    return {
        "role": role,
        "speakers": len({r["spk_id"] for r in rows}),
        "utterances": len(rows),
        "hours": round(sum(r["duration"] for r in rows) / 3600, 4),
        "accents": sorted({r["accent"] for r in rows if r["accent"]}),
        "characters": "".join(sorted(characters)),
        "skipped": {k: len(v) for k, v in skipped.items()},
        "skipped_lines": skipped,
    }


def _write_csv(path, rows):
    fields = ["ID", "duration", "wav", "spk_id", "lang", "accent", "wrd"]
    if rows and "translation" in rows[0]:
        fields.append("translation")
    write_manifest(path, rows, fields)


def _print_summary(summary):
    units = summary["units"]
    print(f"Common Voice preparation ({len(units)} units: {units!r}):")
    for lang, s in summary["languages"].items():
        skipped = ", ".join(f"{k}: {v}" for k, v in s["skipped"].items())
        print(
            f"  {lang} ({s['role']}): {s['speakers']} speakers, "
            f"{s['utterances']} utterances, {s['hours']} h; "
            f"skipped {skipped or 'none'}"
        )
    roles = summary["roles"]
    if roles["speakers_in_several_roles"]:
        print(
            f"  {roles['speakers_in_several_roles']} speakers in several "
            "roles: each kept in one"
        )
    if "accent_inventory" in summary:
        top = list(summary["accent_inventory"]["accents"].items())[:10]
        print("  accents (rows): " + "; ".join(f"{a}: {n}" for a, n in top))
