"""SynthDigits: a multilingual connected-digit corpus synthesised offline.

Utterances are random digit strings written ``"4 1 7 0"`` and read by
espeak-ng (the ``espeakng-loader`` package's library through ctypes, in a
fresh worker process per speaker, see ``espeak_worker``) in the voice's
language: each digit is a word of that language. The label
set (the ten digits and the space) is shared by all languages, and each
language is its own acoustic task: the setting of MetaASR (Hsu et al.,
ICASSP 2020) in a form that needs no download.

Speakers are espeak voice variants (``m1``, ``f3``, ...) with their own
pitch, pitch range, rate and volume. Light augmentation adds white noise
at a random SNR and a speed change. Everything is drawn from generators
seeded by ``(seed, language, speaker, utterance)``: the same seed gives
the same bytes.

Splits (CSV manifests with ``ID, duration, wav, spk_id, lang, wrd``):

* ``train.csv``: meta-train languages, training voices;
* ``dev.csv``: meta-dev languages (model selection only);
* ``test.csv``: meta-test languages (never tuned on);
* ``test_voices.csv``: held-out voice variants of the meta-train
  languages (cross-speaker adaptation).

The three language sets are disjoint; the held-out variants are never used
in ``train.csv``. ``corpus.json`` records the configuration, what was made,
and what espeak could not produce (skipped with a warning).

Authors
 * speechbrain-meta developers 2026
"""

import io
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf
import torch
import torchaudio
from speechbrain.utils.logger import get_logger

from speechbrain_meta.corpora import espeak_worker
from speechbrain_meta.corpora.espeak_worker import Espeak, EspeakError
from speechbrain_meta.data.manifest import write_manifest
from speechbrain_meta.data.tasks import stable_seed

__all__ = [
    "Espeak",
    "EspeakError",
    "prepare_synth_digits",
    "augment",
    "telephone_channel",
]

logger = get_logger(__name__)

SAMPLE_RATE = 16000

TRAIN_LANGUAGES = [
    "en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "ru",
    "tr", "id", "vi", "sw", "hi", "fi", "ro", "cs", "ar", "ko",
]  # fmt: skip
DEV_LANGUAGES = ["da", "uk", "ta"]
TEST_LANGUAGES = ["cmn", "ja", "hu", "el"]
TRAIN_VARIANTS = ["m1", "m2", "m3", "f1", "f2", "f3"]
HELDOUT_VARIANTS = ["m7", "f4"]


def _rng(seed, *keys):
    """A generator seeded by the seed and string/int keys (stable hash)."""
    return np.random.default_rng(stable_seed(seed, *keys))


def digit_string(rng, min_digits, max_digits):
    """A random digit string written with spaces, e.g. ``"4 1 7 0"``.

    Arguments
    ---------
    rng : numpy.random.Generator
        The generator.
    min_digits, max_digits : int
        Length range (inclusive).

    Returns
    -------
    str

    Example
    -------
    >>> s = digit_string(np.random.default_rng(0), 3, 5)
    >>> 3 <= len(s.split()) <= 5 and set(s) <= set("0123456789 ")
    True
    """
    n = int(rng.integers(min_digits, max_digits + 1))
    return " ".join(str(d) for d in rng.integers(0, 10, size=n))


def synthesize_fresh(requests):
    """Synthesises requests in a fresh process (history-independent output).

    Arguments
    ---------
    requests : list of dict
        ``text``, ``voice``, ``rate``, ``pitch``, ``pitch_range``,
        ``volume`` (see ``Espeak.synthesize``).

    Returns
    -------
    tuple
        ``(sample_rate, samples)``: ``samples`` has one entry per request,
        an int16 array, or the error message (str) of a request espeak-ng
        could not produce.

    Example
    -------
    >>> sr, out = synthesize_fresh([{"text": "1 2", "voice": "en"},
    ...                             {"text": "1", "voice": "xx-none"}])
    >>> sr, out[0].dtype, out[1]
    (22050, dtype('int16'), "espeak-ng has no voice 'xx-none'")
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "samples.npz")
        proc = subprocess.run(
            [sys.executable, espeak_worker.__file__, out],
            input=json.dumps(requests),
            text=True,
            capture_output=True,
        )
        if proc.returncode != 0:
            raise EspeakError(
                f"espeak-ng worker failed ({proc.returncode}): "
                f"{proc.stderr.strip()[-2000:]}"
            )
        with np.load(out) as data:
            errors = {
                int(k): v for k, v in json.loads(str(data["errors"])).items()
            }
            samples = [
                errors[i] if i in errors else data[f"u{i}"]
                for i in range(len(requests))
            ]
            return int(data["sample_rate"]), samples


def spoken_text(text, rng, digit_by_digit):
    """What espeak-ng reads for a transcript: one phrase, or digit by digit.

    Read digit by digit (with probability ``digit_by_digit``), each digit
    ends a phrase (a comma): espeak-ng pauses after it and gives it a
    phrase-final intonation, as in a list of isolated digits.

    Arguments
    ---------
    text : str
        The transcript, digits separated by spaces.
    rng : numpy.random.Generator
        Draws the reading style.
    digit_by_digit : float
        Probability of the digit-by-digit style.

    Returns
    -------
    str

    Example
    -------
    >>> spoken_text("4 1 7", np.random.default_rng(0), 1.0)
    '4, 1, 7'
    >>> spoken_text("4 1 7", np.random.default_rng(0), 0.0)
    '4 1 7'
    """
    if digit_by_digit > 0 and rng.uniform() < digit_by_digit:
        return ", ".join(text.split())
    return text


def telephone_channel(wav, sample_rate=SAMPLE_RATE):
    """A narrowband telephone channel: 8 kHz and GSM 6.10, back to the rate.

    Through libsndfile's GSM 6.10 codec, in memory.

    Arguments
    ---------
    wav : numpy.ndarray
        float32 samples at ``sample_rate``.
    sample_rate : int
        Their rate.

    Returns
    -------
    numpy.ndarray
        float32 samples at ``sample_rate``, the same length, band-limited to
        4 kHz and coded.

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> wav = (0.3 * np.sin(2 * np.pi * 440 * t)
    ...        + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    >>> out = telephone_channel(wav)
    >>> spectrum = np.abs(np.fft.rfft(out))
    >>> len(out), bool(spectrum[6000] < 0.01 * spectrum[440])
    (16000, True)
    """
    narrow = torchaudio.functional.resample(
        torch.from_numpy(np.ascontiguousarray(wav)), sample_rate, 8000
    ).numpy()
    coded = io.BytesIO()
    sf.write(coded, narrow, 8000, format="RAW", subtype="GSM610")
    coded.seek(0)
    narrow, _ = sf.read(
        coded,
        format="RAW",
        subtype="GSM610",
        samplerate=8000,
        channels=1,
        dtype="float32",
    )
    out = torchaudio.functional.resample(
        torch.from_numpy(narrow), 8000, sample_rate
    ).numpy()
    out = np.pad(out, (0, max(len(wav) - len(out), 0)))[: len(wav)]
    return out.astype(np.float32)


def augment(
    pcm,
    source_rate,
    rng,
    snr_db,
    speed,
    sample_rate=SAMPLE_RATE,
    telephone=0.0,
    edge_silence=None,
    edge_silence_share=1.0,
):
    """Speed change, resampling to 16 kHz, silence before and after the
    speech, a telephone channel, white noise.

    Arguments
    ---------
    pcm : numpy.ndarray
        int16 samples at ``source_rate``.
    source_rate : int
        Their sampling rate.
    rng : numpy.random.Generator
        Draws the SNR, speed and noise.
    snr_db : tuple of float or None
        SNR range of the added white noise (None: no noise).
    speed : tuple of float or None
        Speed-change range (None: no change).
    sample_rate : int
        Output rate.
    telephone : float
        Probability of passing the utterance through ``telephone_channel``
        (before the noise).
    edge_silence : tuple of float or None
        Range (seconds) of the silence put before the speech and, drawn
        again, after it, as a recording has (espeak-ng starts and stops
        within a few milliseconds of the speech); the white noise covers
        it, at the SNR of the speech. None: none.
    edge_silence_share : float
        Probability of the edge silence (otherwise none).

    Returns
    -------
    numpy.ndarray
        float32 waveform in [-1, 1].

    Example
    -------
    >>> pcm = (np.sin(np.arange(22050) / 5) * 8000).astype(np.int16)
    >>> wav = augment(pcm, 22050, np.random.default_rng(0), (20, 30), None)
    >>> wav.dtype, len(wav), float(abs(wav).max()) <= 1.0
    (dtype('float32'), 16000, True)
    >>> padded = augment(pcm, 22050, np.random.default_rng(0), (20, 30),
    ...                  None, edge_silence=(0.5, 0.5))
    >>> len(padded), float(abs(padded[:8000]).max()) < 0.1
    (32000, True)
    """
    wav = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
    factor = 1.0 if speed is None else float(rng.uniform(*speed))
    # Speed change by resampling: play samples at `factor` times the rate.
    target = int(round(sample_rate / factor / 50.0)) * 50
    wav = torchaudio.functional.resample(wav, source_rate, target).numpy()
    lead = trail = 0
    if edge_silence is not None and rng.uniform() < edge_silence_share:
        lead, trail = (
            int(rng.uniform(*edge_silence) * sample_rate) for _ in range(2)
        )
        wav = np.concatenate(
            [np.zeros(lead, np.float32), wav, np.zeros(trail, np.float32)]
        )
    if telephone > 0 and rng.uniform() < telephone:
        wav = telephone_channel(wav, sample_rate)
    if snr_db is not None:
        snr = float(rng.uniform(*snr_db))
        power = float(np.mean(wav[lead : len(wav) - trail] ** 2)) + 1e-10
        noise = rng.standard_normal(len(wav)).astype(np.float32)
        wav = wav + noise * np.sqrt(power / 10 ** (snr / 10))
    peak = float(np.abs(wav).max()) + 1e-8
    if peak > 0.99:
        wav = wav * (0.99 / peak)
    return wav.astype(np.float32)


def _speaker(seed, lang, variant, index, ranges):
    rng = _rng(seed, "speaker", lang, variant, index)
    return {
        "voice": f"{lang}+{variant}",
        "rate": int(rng.integers(*ranges["rate"])),
        "pitch": int(rng.integers(*ranges["pitch"])),
        "pitch_range": int(rng.integers(*ranges["pitch_range"])),
        "volume": int(rng.integers(*ranges["volume"])),
    }


def prepare_synth_digits(
    save_folder,
    train_languages=TRAIN_LANGUAGES,
    dev_languages=DEV_LANGUAGES,
    test_languages=TEST_LANGUAGES,
    train_variants=TRAIN_VARIANTS,
    heldout_variants=HELDOUT_VARIANTS,
    speakers_per_language=4,
    utts_per_speaker=15,
    heldout_speakers=1,
    heldout_utts_per_speaker=30,
    min_digits=3,
    max_digits=6,
    snr_db=(15.0, 35.0),
    speed=(0.9, 1.1),
    telephone=0.0,
    digit_by_digit=0.0,
    edge_silence=None,
    edge_silence_share=1.0,
    rate=(140, 200),
    pitch=(25, 75),
    pitch_range=(30, 70),
    volume=(70, 130),
    seed=1234,
    skip_prep=False,
):
    """Synthesises the corpus and writes the manifests, unless done.

    Arguments
    ---------
    save_folder : str
        Output folder (``wav/``, the CSVs and ``corpus.json``).
    train_languages, dev_languages, test_languages : list of str
        espeak language codes of the meta-train, meta-dev and meta-test
        tasks; must be disjoint.
    train_variants : list of str
        espeak voice variants the speakers of every split are drawn from.
    heldout_variants : list of str
        Variants kept out of training, for ``test_voices.csv``.
    speakers_per_language : int
        Speakers per language (variants taken in turn from a place in the
        list that depends on the language).
    utts_per_speaker : int
        Utterances per speaker.
    heldout_speakers : int
        Held-out-voice speakers per meta-train language.
    heldout_utts_per_speaker : int
        Utterances per held-out-voice speaker.
    min_digits, max_digits : int
        Digit-string length range.
    snr_db : list of float or None
        Range of the added white noise's SNR (None: clean).
    speed : list of float or None
        Range of the speed change (None: none).
    telephone : float
        Share of the utterances passed through a telephone channel (8 kHz,
        GSM 6.10; ``telephone_channel``).
    digit_by_digit : float
        Share of the utterances read digit by digit, each digit its own
        phrase with a pause after it (``spoken_text``), as people read out
        a phone number; the others are read as one phrase.
    edge_silence : list of float or None
        Range (seconds) of the silence before and after each utterance's
        speech (``augment``), as recordings start and end; None: none
        (espeak-ng's output starts and stops at the speech).
    edge_silence_share : float
        Share of the utterances given that silence.
    rate, pitch, pitch_range, volume : list of int
        Ranges of the espeak speaker parameters.
    seed : int
        Everything is drawn from it: same seed, same bytes.
    skip_prep : bool
        Do nothing (data prepared elsewhere).

    Returns
    -------
    dict
        Split name to manifest path.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> paths = prepare_synth_digits(
    ...     tmp, ["en", "de"], ["fr"], ["cmn"], ["m1"], ["f1"],
    ...     speakers_per_language=1, utts_per_speaker=2,
    ...     heldout_utts_per_speaker=1)
    >>> sorted(paths)
    ['dev', 'test', 'test_voices', 'train']
    >>> with open(paths["test"]) as f:
    ...     f.readline().strip()
    'ID,duration,wav,spk_id,lang,wrd'
    """
    splits = {
        "train": list(train_languages),
        "dev": list(dev_languages),
        "test": list(test_languages),
    }
    paths = {
        name: os.path.join(save_folder, f"{name}.csv")
        for name in ("train", "dev", "test", "test_voices")
    }
    if skip_prep:
        return paths
    _check_disjoint(splits, train_variants, heldout_variants)
    config = {
        "splits": splits,
        "train_variants": list(train_variants),
        "heldout_variants": list(heldout_variants),
        "speakers_per_language": speakers_per_language,
        "utts_per_speaker": utts_per_speaker,
        "heldout_speakers": heldout_speakers,
        "heldout_utts_per_speaker": heldout_utts_per_speaker,
        "digits": [min_digits, max_digits],
        "snr_db": None if snr_db is None else list(snr_db),
        "speed": None if speed is None else list(speed),
        **({"telephone": telephone} if telephone else {}),
        **({"digit_by_digit": digit_by_digit} if digit_by_digit else {}),
        **(
            {
                "edge_silence": list(edge_silence),
                "edge_silence_share": edge_silence_share,
            }
            if edge_silence is not None
            else {}
        ),
        "ranges": {
            "rate": list(rate),
            "pitch": list(pitch),
            "pitch_range": list(pitch_range),
            "volume": list(volume),
        },
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
    }
    summary_path = os.path.join(save_folder, "corpus.json")
    if _already_done(summary_path, config, paths):
        logger.info("SynthDigits already prepared in %s", save_folder)
        return paths

    os.makedirs(save_folder, exist_ok=True)
    ranges = config["ranges"]
    made = {name: {} for name in paths}
    skipped = []
    speakers = []  # (split, lang, spk_id, speaker, texts)
    for split, languages in splits.items():
        for lang in languages:
            for s in range(speakers_per_language):
                speakers.append((split, lang, train_variants, s))
    for lang in splits["train"]:
        for s in range(heldout_speakers):
            speakers.append(("test_voices", lang, heldout_variants, s))
    jobs = []
    for split, lang, variants, s in speakers:
        # Each language starts at its own place in the variant list, so a
        # long list gives every language a different set of voices.
        offset = stable_seed(seed, "variants", lang) % len(variants)
        variant = variants[(offset + s) % len(variants)]
        spk_id = f"{lang}_{variant}_{s}"
        speaker = _speaker(seed, lang, variant, s, ranges)
        n_utts = (
            heldout_utts_per_speaker
            if split == "test_voices"
            else utts_per_speaker
        )
        texts = [
            digit_string(
                _rng(seed, split, spk_id, u, "text"), min_digits, max_digits
            )
            for u in range(n_utts)
        ]
        requests = [
            {
                "text": spoken_text(
                    t, _rng(seed, split, spk_id, u, "style"), digit_by_digit
                ),
                "seed": u + 1,
                **speaker,
            }
            for u, t in enumerate(texts)
        ]
        jobs.append((split, lang, spk_id, texts, requests))

    # One fresh espeak-ng process per speaker (see espeak_worker), two at
    # a time; the augmentation and the files are made here, in order.
    with ThreadPoolExecutor(max_workers=2) as pool:
        outputs = list(pool.map(lambda job: synthesize_fresh(job[4]), jobs))
    rows = {name: [] for name in paths}
    for (split, lang, spk_id, texts, _), (source_rate, samples) in zip(
        jobs, outputs
    ):
        if all(isinstance(x, str) for x in samples):
            logger.warning("SynthDigits: skipping %s (%s)", spk_id, samples[0])
            skipped.append(
                {"split": split, "spk_id": spk_id, "why": samples[0]}
            )
            continue
        folder = os.path.join(save_folder, "wav", lang)
        os.makedirs(folder, exist_ok=True)
        for u, (text, pcm) in enumerate(zip(texts, samples)):
            utt_id = f"{spk_id}_{u:03d}"
            if isinstance(pcm, str):
                logger.warning("SynthDigits: skipping %s (%s)", utt_id, pcm)
                skipped.append({"split": split, "utt_id": utt_id, "why": pcm})
                continue
            rng = _rng(seed, split, spk_id, u, "augment")
            wav = augment(
                pcm,
                source_rate,
                rng,
                snr_db,
                speed,
                telephone=telephone,
                edge_silence=edge_silence,
                edge_silence_share=edge_silence_share,
            )
            path = os.path.join(folder, f"{utt_id}.wav")
            sf.write(path, wav, SAMPLE_RATE, subtype="PCM_16")
            rows[split].append(
                {
                    "ID": utt_id,
                    "duration": round(len(wav) / SAMPLE_RATE, 4),
                    "wav": os.path.join(
                        "$data_root", "wav", lang, f"{utt_id}.wav"
                    ),
                    "spk_id": spk_id,
                    "lang": lang,
                    "wrd": text,
                }
            )
            made[split][lang] = made[split].get(lang, 0) + 1
    for name, path in paths.items():
        write_manifest(
            path, rows[name], ["ID", "duration", "wav", "spk_id", "lang", "wrd"]
        )
    summary = {
        "config": config,
        "made": made,
        "skipped": skipped,
        "utterances": {name: len(r) for name, r in rows.items()},
        "hours": {
            name: round(sum(r["duration"] for r in rs) / 3600, 4)
            for name, rs in rows.items()
        },
    }
    with open(summary_path, "w", encoding="utf-8") as fout:
        json.dump(summary, fout, indent=2)
    logger.info(
        "SynthDigits: %s utterances in %s (%d skipped)",
        summary["utterances"],
        save_folder,
        len(skipped),
    )
    return paths


def _check_disjoint(splits, train_variants, heldout_variants):
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = set(splits[a]) & set(splits[b])
            if common:
                raise ValueError(
                    f"SynthDigits: languages {sorted(common)} are in both "
                    f"{a} and {b}; the splits must be disjoint."
                )
    common = set(train_variants) & set(heldout_variants)
    if common:
        raise ValueError(
            f"SynthDigits: variants {sorted(common)} are both training and "
            "held-out voices."
        )


def _already_done(summary_path, config, paths):
    if not all(os.path.exists(p) for p in paths.values()):
        return False
    if not os.path.exists(summary_path):
        return False
    with open(summary_path, encoding="utf-8") as fin:
        return json.load(fin).get("config") == json.loads(json.dumps(config))
