"""SynthDigits: a multilingual connected-digit corpus synthesised offline.

Utterances are random digit strings written ``"4 1 7 0"`` and read by
espeak-ng (through the ``espeakng-loader`` package, in-process via ctypes)
in the voice's language: each digit is a word of that language. The label
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

import csv
import ctypes
import hashlib
import json
import os
import threading

import numpy as np
import soundfile as sf
import torch
import torchaudio
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

SAMPLE_RATE = 16000

# espeak-ng API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_PHONEMES_IPA = 0x02

TRAIN_LANGUAGES = [
    "en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "ru",
    "tr", "id", "vi", "sw", "hi", "fi", "ro", "cs", "ar", "ko",
]  # fmt: skip
DEV_LANGUAGES = ["da", "uk", "ta"]
TEST_LANGUAGES = ["cmn", "ja", "hu", "el"]
TRAIN_VARIANTS = ["m1", "m2", "m3", "f1", "f2", "f3"]
HELDOUT_VARIANTS = ["m7", "f4"]


class EspeakError(RuntimeError):
    """espeak-ng could not be loaded or could not produce a voice."""


class Espeak:
    """In-process espeak-ng synthesiser (ctypes over ``espeakng-loader``).

    espeak-ng keeps global state, so there is one instance per process
    (``Espeak.get()``), and calls are serialised by a lock.

    Example
    -------
    >>> tts = Espeak.get()
    >>> wav = tts.synthesize("4 1", "en")
    >>> wav.dtype, tts.sample_rate, len(wav) > 0.3 * tts.sample_rate
    (dtype('int16'), 22050, True)
    >>> tts.phonemes("4 1", "en")
    'fˈɔː wˈɒn'
    """

    _instance = None
    _lock = threading.Lock()

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as err:  # pragma: no cover - install problem
            raise EspeakError(
                "The SynthDigits corpus needs espeak-ng from the "
                "`espeakng-loader` package: pip install espeakng-loader "
                "(or speechbrain-meta[synth])."
            ) from err
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0
        )
        if self.sample_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({self.sample_rate})")
        self._chunks = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_short),
            ctypes.c_int,
            ctypes.c_void_p,
        )

        def collect(wav, n_samples, events):
            if n_samples > 0:
                chunk = np.ctypeslib.as_array(wav, shape=(n_samples,))
                self._chunks.append(chunk.copy())
            return 0

        self._callback = callback_type(collect)  # keep a reference
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self._voice = None

    @classmethod
    def get(cls):
        """The process-wide synthesiser.

        Returns
        -------
        Espeak
        """
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _set_voice(self, voice):
        if voice != self._voice:
            status = self._lib.espeak_SetVoiceByName(voice.encode())
            if status != 0:
                raise EspeakError(f"espeak-ng has no voice {voice!r}")
            self._voice = voice

    def synthesize(
        self, text, voice, rate=175, pitch=50, pitch_range=50, volume=100
    ):
        """Reads a text aloud.

        Arguments
        ---------
        text : str
            What to say.
        voice : str
            An espeak voice name: a language, optionally ``+variant``.
        rate : int
            Words per minute.
        pitch : int
            Base pitch, 0-100.
        pitch_range : int
            Pitch range, 0-100.
        volume : int
            Amplitude, 0-200.

        Returns
        -------
        numpy.ndarray
            int16 samples at ``self.sample_rate``.
        """
        encoded = text.encode("utf-8")
        with self._lock:
            self._set_voice(voice)
            for param, value in (
                (_ESPEAK_RATE, rate),
                (_ESPEAK_PITCH, pitch),
                (_ESPEAK_RANGE, pitch_range),
                (_ESPEAK_VOLUME, volume),
            ):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks = []
            buffer = ctypes.create_string_buffer(encoded)
            status = self._lib.espeak_Synth(
                buffer, len(encoded) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            chunks, self._chunks = self._chunks, []
        if status != 0 or not chunks:
            raise EspeakError(f"espeak-ng produced no audio for {voice!r}")
        return np.concatenate(chunks)

    def phonemes(self, text, voice):
        """IPA phones of a text as the voice's language reads it.

        Arguments
        ---------
        text : str
            The text.
        voice : str
            An espeak voice name.

        Returns
        -------
        str
            Space-separated IPA words.
        """
        with self._lock:
            self._set_voice(voice)
            pointer = ctypes.c_char_p(text.encode("utf-8"))
            words = []
            while pointer.value:
                out = self._lib.espeak_TextToPhonemes(
                    ctypes.byref(pointer), _ESPEAK_CHARS_UTF8, _PHONEMES_IPA
                )
                if out:
                    words.append(out.decode("utf-8").strip())
        return " ".join(w for w in words if w)


def _rng(seed, *keys):
    """A generator seeded by the seed and string/int keys (stable hash)."""
    digest = hashlib.sha256(
        "/".join(str(k) for k in (seed, *keys)).encode()
    ).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


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


def render(tts, text, speaker, rng, snr_db, speed, sample_rate=SAMPLE_RATE):
    """Synthesises one utterance and applies the augmentation.

    Arguments
    ---------
    tts : Espeak
        The synthesiser.
    text : str
        What to say.
    speaker : dict
        ``voice``, ``rate``, ``pitch``, ``pitch_range``, ``volume``.
    rng : numpy.random.Generator
        Draws the SNR, speed and noise.
    snr_db : tuple of float or None
        SNR range of the added white noise (None: no noise).
    speed : tuple of float or None
        Speed-change range (None: no change).
    sample_rate : int
        Output rate.

    Returns
    -------
    numpy.ndarray
        float32 waveform in [-1, 1].

    Example
    -------
    >>> spk = {"voice": "en+m1", "rate": 170, "pitch": 50,
    ...        "pitch_range": 50, "volume": 100}
    >>> wav = render(Espeak.get(), "1 2", spk, np.random.default_rng(0),
    ...              (20, 30), (0.9, 1.1))
    >>> wav.dtype, float(abs(wav).max()) <= 1.0
    (dtype('float32'), True)
    """
    pcm = tts.synthesize(
        text,
        speaker["voice"],
        rate=speaker["rate"],
        pitch=speaker["pitch"],
        pitch_range=speaker["pitch_range"],
        volume=speaker["volume"],
    )
    wav = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
    factor = 1.0 if speed is None else float(rng.uniform(*speed))
    # Speed change by resampling: play samples at `factor` times the rate.
    target = int(round(sample_rate / factor / 50.0)) * 50
    wav = torchaudio.functional.resample(wav, tts.sample_rate, target)
    wav = wav.numpy()
    if snr_db is not None:
        snr = float(rng.uniform(*snr_db))
        power = float(np.mean(wav**2)) + 1e-10
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
        Speakers per language (variants drawn cyclically).
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

    tts = Espeak.get()
    os.makedirs(save_folder, exist_ok=True)
    ranges = config["ranges"]
    made = {name: {} for name in paths}
    skipped = []
    plan = []  # (split, lang, speakers, utts per speaker)
    for split, languages in splits.items():
        for lang in languages:
            plan.append((split, lang, train_variants, speakers_per_language))
    for lang in splits["train"]:
        plan.append(("test_voices", lang, heldout_variants, heldout_speakers))
    rows = {name: [] for name in paths}
    for split, lang, variants, n_speakers in plan:
        n_utts = (
            heldout_utts_per_speaker
            if split == "test_voices"
            else utts_per_speaker
        )
        for s in range(n_speakers):
            variant = variants[s % len(variants)]
            speaker = _speaker(seed, lang, variant, s, ranges)
            spk_id = f"{lang}_{variant}_{s}"
            try:
                tts.synthesize("1", speaker["voice"])
            except EspeakError as err:
                logger.warning("SynthDigits: skipping %s (%s)", spk_id, err)
                skipped.append({"split": split, "spk_id": spk_id, "why": str(err)})
                continue
            folder = os.path.join(save_folder, "wav", lang)
            os.makedirs(folder, exist_ok=True)
            for u in range(n_utts):
                rng = _rng(seed, split, spk_id, u)
                text = digit_string(rng, min_digits, max_digits)
                utt_id = f"{spk_id}_{u:03d}"
                try:
                    wav = render(tts, text, speaker, rng, snr_db, speed)
                except EspeakError as err:
                    logger.warning("SynthDigits: skipping %s (%s)", utt_id, err)
                    skipped.append(
                        {"split": split, "utt_id": utt_id, "why": str(err)}
                    )
                    continue
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
        with open(path, "w", newline="", encoding="utf-8") as fout:
            writer = csv.DictWriter(
                fout, ["ID", "duration", "wav", "spk_id", "lang", "wrd"]
            )
            writer.writeheader()
            writer.writerows(rows[name])
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
