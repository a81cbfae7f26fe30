"""Small stand-ins for real corpora, in their exact on-disk layouts.

The recipes for corpora users have on disk (LibriSpeech...) are tested, and
can be tried, without the corpus: these functions synthesise a few
speakers with espeak-ng (``speechbrain_meta.corpora.synth``, one fresh worker
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

from speechbrain_meta.corpora.synth import synthesize_fresh

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


# A few everyday words per language, for the Common Voice stand-in.
CV_WORDS = {
    "en": "the one two three house water light green open close morning "
    "evening street",
    "de": "der eins zwei drei haus wasser licht grün offen morgen abend straße",
    "fr": "le un deux trois maison eau lumière vert ouvert matin soir été",
    "es": "el uno dos tres casa agua luz verde abierto mañana noche año",
    "it": "il uno due tre casa acqua luce verde aperto mattina sera città",
    "pl": "jeden dwa trzy dom woda światło zielony otwarty rano wieczór",
    "nl": "de een twee drie huis water licht groen open morgen avond",
    "pt": "o um dois três casa água luz verde aberto manhã noite",
    # Romanian with both spellings of its comma-below letters (cedilla ş ţ
    # as typed on many keyboards, comma ș ț), and the letter ă; Catalan
    # with its middle dot (l·l): both occur in Common Voice's sentences.
    "ro": "unu doi trei casă apă lumină verde deschis dimineață seară "
    "şcoală ţară școală țară",
    "ca": "el un dos tres casa aigua llum verd obert matí col·legi il·lusió",
}
# Typographic quotes and apostrophes, as Common Voice's sentences have
# them: the stand-in writes every third sentence of these languages so.
CV_QUOTES = {"en": ("‘{}’", "oʼclock"), "ca": ("«{}»", "l’aigua")}
# Speakers' accent fields, cyclically: several accents in one field and
# names with commas of their own, as real releases hold them (joined with
# `accent_separator`), and no accent at all (most speakers give none).
CV_ACCENTS = {
    "en": [
        ["United States English", "Midwestern United States English"],
        ["England English"],
        ["Scottish English"],
        ["India and South Asia (India, Pakistan, Sri Lanka)"],
        [],
    ],
    "de": [["Deutschland Deutsch"], ["Österreichisches Deutsch"]],
    "fr": [["Français de France"], ["Français du Canada"]],
    "es": [["España: Centro-Sur peninsular"], ["México"]],
}
# Common Voice's tsv headers: releases before 2022 ("accent") and after
# ("accents", with sentence ids, domain and variant).
CV_COLUMNS = {
    "old": "client_id path sentence up_votes down_votes age gender accent "
    "locale segment".split(),
    "new": "client_id path sentence_id sentence sentence_domain up_votes "
    "down_votes age gender accents variant locale segment".split(),
}


def common_voice_standin(
    root,
    languages=None,
    utterances_per_speaker=6,
    columns="new",
    sample_rate=48000,
    seed=0,
    accent_separator=", ",
    with_accents=True,
):
    """Writes a Common Voice-layout corpus of synthesised speakers.

    Per language, as in a Common Voice release: ``root/<lang>/clips/
    common_voice_<lang>_<n>.mp3`` (48 kHz mp3) and the tab-separated
    ``train.tsv``, ``dev.tsv``, ``test.tsv`` (disjoint speakers) and
    ``validated.tsv`` (all of them), with ``client_id``, ``path``,
    ``sentence``, ``accent`` or ``accents``, ``locale`` among the columns.

    Arguments
    ---------
    root : str
        The folder that holds the language folders.
    languages : dict, optional
        Language code to ``{"train": n, "dev": n, "test": n}`` speakers.
        Default: 3/1/1 speakers of ``en``, ``de``, ``fr`` and ``es``.
    utterances_per_speaker : int
        Utterances per speaker.
    columns : str
        ``"new"`` (``accents``, since 2022) or ``"old"`` (``accent``).
    sample_rate : int
        Of the mp3 files.
    seed : int
        Everything is drawn from it.
    accent_separator : str
        Between a speaker's accents: ``", "`` (releases before 2025) or
        ``"|"`` (after).
    with_accents : bool
        False: every accent field empty (as some releases ship them).

    Returns
    -------
    dict
        Language to split to the list of client ids.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> speakers = common_voice_standin(
    ...     root, {"es": {"train": 1}}, utterances_per_speaker=2)
    >>> sorted(os.listdir(os.path.join(root, "es")))
    ['clips', 'dev.tsv', 'test.tsv', 'train.tsv', 'validated.tsv']
    >>> len(os.listdir(os.path.join(root, "es", "clips")))
    2
    """
    if languages is None:
        languages = {
            lang: {"train": 3, "dev": 1, "test": 1}
            for lang in ("en", "de", "fr", "es")
        }
    header = CV_COLUMNS[columns]
    rng = np.random.default_rng(seed)
    variants = ["m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4"]
    speakers = {}
    for lang, splits in languages.items():
        words = CV_WORDS[lang].split()
        accents = CV_ACCENTS.get(lang, [[]]) if with_accents else [[]]
        quote, quoted_word = CV_QUOTES.get(lang, ("{}", None))
        os.makedirs(os.path.join(root, lang, "clips"), exist_ok=True)
        tables = {s: [] for s in ("train", "dev", "test")}
        speakers[lang] = {}
        n = 0
        for split in ("train", "dev", "test"):
            speakers[lang][split] = []
            for _ in range(splits.get(split, 0)):
                client = "%064x" % int(rng.integers(0, 2**62))
                voice = f"{lang}+{variants[n % len(variants)]}"
                accent = accent_separator.join(
                    accents[len(speakers[lang][split]) % len(accents)]
                )
                speakers[lang][split].append(client)
                texts = [
                    " ".join(rng.choice(words, size=int(rng.integers(2, 5))))
                    for _ in range(utterances_per_speaker)
                ]
                written = [t[0].upper() + t[1:] + "." for t in texts]
                for i, text in enumerate(texts):
                    if quoted_word is not None and (n + i) % 3 == 1:
                        texts[i] = f"{text} {quoted_word}"
                        written[i] = quote.format(
                            texts[i][0].upper() + texts[i][1:] + "."
                        )
                wavs = _synthesize_speaker(voice, texts, rng)
                for sentence, wav in zip(written, wavs):
                    name = f"common_voice_{lang}_{30000000 + n}.mp3"
                    n += 1
                    wav48 = torchaudio.functional.resample(
                        torch.from_numpy(wav), SAMPLE_RATE, sample_rate
                    ).numpy()
                    sf.write(
                        os.path.join(root, lang, "clips", name),
                        wav48,
                        sample_rate,
                        format="MP3",
                    )
                    values = {
                        "client_id": client,
                        "path": name,
                        "sentence_id": "%064x" % n,
                        "sentence": sentence,
                        "sentence_domain": "",
                        "up_votes": "2",
                        "down_votes": "0",
                        "age": "",
                        "gender": "",
                        "accent": accent,
                        "accents": accent,
                        "variant": "",
                        "locale": lang,
                        "segment": "",
                    }
                    tables[split].append([values[c] for c in header])
        for name, rows in list(tables.items()) + [
            ("validated", sum(tables.values(), []))
        ]:
            with open(
                os.path.join(root, lang, f"{name}.tsv"), "w", encoding="utf-8"
            ) as f:
                f.write("\t".join(header) + "\n")
                for row in rows:
                    f.write("\t".join(row) + "\n")
    return speakers


# CoVoST 2's translation files: tab-separated, a header, no quoting.
COVOST_COLUMNS = ["path", "sentence", "translation", "client_id", "split"]


def _stand_in_translation(sentence, lang, target="en"):
    """The stand-in's "translation" of a sentence: each word of the source
    language's list replaced by the target list's word at its position
    (deterministic, not a translation), in the sentence's written form.
    """
    source = CV_WORDS[lang].split()
    words = CV_WORDS[target].split()
    bare = sentence.strip(".‘’«»").lower().split()
    out = [
        words[source.index(w) % len(words)] if w in source else w for w in bare
    ]
    text = " ".join(out)
    return text[:1].upper() + text[1:] + "."


def covost_standin(
    root, covost_folder, languages=None, utterances_per_speaker=4, seed=0
):
    r"""Writes a CoVoST 2 X -> En stand-in: a Common Voice-layout corpus
    (``common_voice_standin``) and, per source language, the translation
    file ``covost_folder/covost_v2.<lang>_en.tsv`` as CoVoST 2 ships it.

    The tsv has CoVoST 2's columns (``COVOST_COLUMNS``), tabs and no
    quoting, and its quirks: a translation with ``"`` in it (a character,
    not a quote: every fourth row), training rows split between ``train``
    and ``train_covost``, one row with an empty translation and one whose
    clip is not in the release's ``validated.tsv`` (CoVoST 2 was made from
    Common Voice 4). A speaker's split is its Common Voice split. The
    "translations" are the English stand-in words at the positions of the
    source words (``_stand_in_translation``): a layout, not a translation.

    Arguments
    ---------
    root : str
        The folder of the Common Voice language folders.
    covost_folder : str
        Where the ``covost_v2.*.tsv`` files go.
    languages : dict, optional
        Language to ``{"train": n, "dev": n, "test": n}`` speakers
        (``common_voice_standin``); default 2/1/1 speakers of ``de``,
        ``fr``, ``es`` and ``it``.
    utterances_per_speaker : int
        Utterances per speaker.
    seed : int
        Everything is drawn from it.

    Returns
    -------
    dict
        Language to its quirks' clip names: ``empty_translation``,
        ``not_validated``.

    Example
    -------
    >>> import tempfile
    >>> root, covost = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> quirks = covost_standin(
    ...     root, covost, {"de": {"train": 1, "test": 1}}, 4)
    >>> sorted(os.listdir(covost))
    ['covost_v2.de_en.tsv']
    >>> with open(os.path.join(covost, "covost_v2.de_en.tsv")) as f:
    ...     lines = f.read().splitlines()
    >>> lines[0].split("\t")
    ['path', 'sentence', 'translation', 'client_id', 'split']
    >>> sorted({line.split("\t")[4] for line in lines[1:]})
    ['test', 'train', 'train_covost']
    """
    if languages is None:
        languages = {
            lang: {"train": 2, "dev": 1, "test": 1}
            for lang in ("de", "fr", "es", "it")
        }
    common_voice_standin(
        root,
        languages,
        utterances_per_speaker=utterances_per_speaker,
        seed=seed,
    )
    os.makedirs(covost_folder, exist_ok=True)
    quirks = {}
    for lang in languages:
        rows = []
        for split in ("train", "dev", "test"):
            tsv = os.path.join(root, lang, f"{split}.tsv")
            with open(tsv, encoding="utf-8") as f:
                header, *lines = f.read().splitlines()
            names = header.split("\t")
            for i, line in enumerate(lines):
                record = dict(zip(names, line.split("\t")))
                translation = _stand_in_translation(record["sentence"], lang)
                if len(rows) % 4 == 3:  # a quoted word, unescaped
                    first, *rest = translation.split(" ")
                    translation = " ".join([f'"{first}"', *rest])
                name = split
                if split == "train" and i % 2:
                    name = "train_covost"  # CoVoST 1's extra training rows
                rows.append(
                    [record["path"], record["sentence"], translation]
                    + [record["client_id"], name]
                )
        train = [r for r in rows if r[4].startswith("train")]
        train[-1][2] = ""  # an empty translation
        missing = f"common_voice_{lang}_{99999999}.mp3"
        rows.append([missing, "Nicht da.", "Not there.", "0" * 64, "train"])
        path = os.path.join(covost_folder, f"covost_v2.{lang}_en.tsv")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\t".join(COVOST_COLUMNS) + "\n")
            f.writelines("\t".join(row) + "\n" for row in rows)
        quirks[lang] = {
            "empty_translation": train[-1][0],
            "not_validated": missing,
        }
    return quirks


# Speech Commands v0.02's 35 words; the first ten are the standard commands.
GSC_COMMANDS = "yes no up down left right on off stop go".split()
GSC_WORDS = GSC_COMMANDS + [
    *"zero one two three four five six seven eight nine".split(),
    *"bed bird cat dog happy house marvin sheila tree wow".split(),
    *"backward forward follow learn visual".split(),
]


def _background_noises(rng, seconds):
    """Six synthetic noises named as Speech Commands' recordings."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    white = rng.standard_normal(n)

    def band(signal, width):  # a moving-average low-pass
        return np.convolve(signal, np.ones(width) / width, "same")

    pink = np.cumsum(white) / SAMPLE_RATE**0.5
    pink = pink - band(pink, 400)
    tap = band(white, 3) - band(white, 12)
    bike = (1 + np.sin(2 * np.pi * 1.5 * t)) * (
        np.sin(2 * np.pi * 90 * t) + 0.3 * band(white, 8)
    )
    dishes = 0.05 * white
    for start in rng.integers(0, n - 800, size=int(seconds * 3)):
        dishes[start : start + 800] += np.exp(-np.arange(800) / 120) * np.sin(
            2 * np.pi * rng.uniform(1500, 4000) * np.arange(800) / SAMPLE_RATE
        )
    pitch = 500 + 200 * np.sin(2 * np.pi * 0.3 * t)
    miaow = (
        np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE)
        * (np.sin(2 * np.pi * 0.5 * t) > 0.5)
        + 0.05 * white
    )
    return {
        "white_noise": white,
        "pink_noise": pink,
        "running_tap": tap,
        "exercise_bike": bike,
        "doing_the_dishes": dishes,
        "dude_miaowing": miaow,
    }


def speech_commands_standin(
    root,
    words=None,
    speakers=12,
    repetitions=1,
    validation_speakers=2,
    testing_speakers=2,
    noise_floor_dbfs=(-60.0, -40.0),
    short_clips=0.3,
    noise_seconds=60.0,
    seed=0,
):
    """Writes a Google Speech Commands-layout corpus of synthesised words.

    As in the real corpus: ``root/<word>/<speaker>_nohash_<n>.wav`` (16
    kHz, 16-bit PCM, at most 1 s and often less: a share ``short_clips``
    of the clips end early, between the word's end and 1 s, as many real
    clips do; the word at a random offset), speakers named by 8 hex
    digits, ``validation_list.txt`` and ``testing_list.txt`` listing the
    clips (``<word>/<file>``) of the speakers held out for each (by
    speaker, as the real lists are), and ``_background_noise_/`` with six
    recordings of about a minute named as the real ones (synthetic noises
    here: white, pink, a tap's band of noise, a bike's pulsing hum, dishes'
    clicks, a cat's tones).

    Each speaker's clips carry a recording noise floor (white noise at a
    level drawn per speaker), as the real clips recorded by volunteers'
    microphones do: a synthesiser's digital silence (most of each 1 s
    clip) gives features far from any recording's, and a model trained
    with additive noise meets it only on held-out clips.

    Arguments
    ---------
    root : str
        The corpus folder (``speech_commands_v0.02/``).
    words : list of str, optional
        The words (default: the 35 of v0.02).
    speakers : int
        Speakers; each says every word ``repetitions`` times.
    repetitions : int
        Clips per speaker and word (``_nohash_0``, ``_nohash_1``, ...).
    validation_speakers, testing_speakers : int
        Speakers whose clips go to each list.
    noise_floor_dbfs : tuple of float, optional
        The range (RMS, dB full scale) the speakers' noise floors are
        drawn from, uniformly; ``None`` leaves digital silence.
    short_clips : float
        The share of clips shorter than 1 s.
    noise_seconds : float
        Length of each background noise recording.
    seed : int
        Everything is drawn from it.

    Returns
    -------
    list of str
        The speaker ids.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> speakers = speech_commands_standin(root, ["yes", "no"], speakers=3,
    ...     validation_speakers=1, testing_speakers=1)
    >>> sorted(os.listdir(root))  # doctest: +NORMALIZE_WHITESPACE
    ['_background_noise_', 'no', 'testing_list.txt', 'validation_list.txt',
     'yes']
    >>> len(os.listdir(os.path.join(root, "yes")))
    3
    """
    words = list(GSC_WORDS if words is None else words)
    rng = np.random.default_rng(seed)
    ids = []
    while len(ids) < speakers:
        spk = f"{int(rng.integers(0, 2**32)):08x}"
        if spk not in ids:
            ids.append(spk)
    for word in words:
        os.makedirs(os.path.join(root, word), exist_ok=True)
    lists = {"validation": [], "testing": []}
    for s, spk in enumerate(ids):
        voice = ENGLISH_VOICES[s % len(ENGLISH_VOICES)]
        texts = [w for w in words for _ in range(repetitions)]
        wavs = _synthesize_speaker(voice, texts, rng)
        floor = 0.0
        if noise_floor_dbfs is not None:
            floor = 10 ** (rng.uniform(*noise_floor_dbfs) / 20)
        for i, (word, wav) in enumerate(zip(texts, wavs)):
            wav = wav[:SAMPLE_RATE]
            length = SAMPLE_RATE
            if rng.uniform() < short_clips:  # ends between word and 1 s
                length = int(rng.integers(len(wav), SAMPLE_RATE + 1))
            clip = (floor * rng.standard_normal(length)).astype(np.float32)
            offset = int(rng.integers(0, length - len(wav) + 1))
            clip[offset : offset + len(wav)] += wav
            name = f"{word}/{spk}_nohash_{i % repetitions}.wav"
            sf.write(
                os.path.join(root, name), clip, SAMPLE_RATE, subtype="PCM_16"
            )
            if s < validation_speakers:
                lists["validation"].append(name)
            elif s < validation_speakers + testing_speakers:
                lists["testing"].append(name)
    for split, names in lists.items():
        with open(os.path.join(root, f"{split}_list.txt"), "w") as f:
            f.writelines(n + "\n" for n in sorted(names))
    noise = os.path.join(root, "_background_noise_")
    os.makedirs(noise, exist_ok=True)
    for name, wav in _background_noises(rng, noise_seconds).items():
        wav = (0.3 * wav / np.abs(wav).max()).astype(np.float32)
        sf.write(os.path.join(noise, name + ".wav"), wav, SAMPLE_RATE, "PCM_16")
    return ids
