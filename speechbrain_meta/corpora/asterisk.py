"""A real-speech few-shot set: connected digits from recorded voice prompts.

Debian packages three real speakers' telephone prompts (8 kHz), each with
one recording of every digit: ``asterisk-prompt-es-co`` (Colombian
Spanish, GSM 6.10), ``asterisk-prompt-fr-armelle`` (French, GSM 6.10) and
``asterisk-prompt-it-menardi-wav`` (Italian, WAV). This module fetches them
with ``apt-get download`` (nothing else is downloaded), reads the digit
recordings (raw GSM through libsndfile, no ``sox`` needed), trims their
silences, and builds connected digit strings like SynthDigits' (random
pauses and gains, light white noise, 16 kHz), one task per speaker, in the
SynthDigits manifest format (``ID, duration, wav, spk_id, lang, wrd``).

Where ``apt-get`` is missing or cannot fetch a package, that speaker is
skipped with a message; with no speaker the set is skipped (``None``).
The ``asterisk-core-sounds-*`` packages are reserved for an independent
check and refused.

Authors
 * speechbrain-meta developers 2026
"""

import glob
import io
import json
import os
import shutil
import subprocess
import tarfile

import numpy as np
import soundfile as sf
import torch
import torchaudio
from speechbrain.utils.logger import get_logger

from speechbrain_meta.data.manifest import write_manifest
from speechbrain_meta.data.tasks import stable_seed

logger = get_logger(__name__)

SAMPLE_RATE = 16000

# package: (language, speaker, folder of the digit recordings in the package)
SPEAKERS = {
    "asterisk-prompt-es-co": (
        "es",
        "es_co",
        "usr/share/asterisk/sounds/es/digits",
    ),
    "asterisk-prompt-fr-armelle": (
        "fr",
        "fr_armelle",
        "usr/share/asterisk/sounds/fr/digits",
    ),
    "asterisk-prompt-it-menardi-wav": (
        "it",
        "it_menardi",
        "usr/share/asterisk/sounds/it_IT_f_Menardi/digits",
    ),
}
RESERVED = "asterisk-core-sounds"


def fetch_package(name, folder):
    """A package's ``.deb`` in ``folder``, fetched with ``apt-get download``.

    Arguments
    ---------
    name : str
        The Debian package.
    folder : str
        Where the ``.deb`` is kept (reused if already there).

    Returns
    -------
    str or None
        The ``.deb`` path, or None (with a logged reason) where apt is
        missing or the download failed.

    Example
    -------
    >>> fetch_package("asterisk-core-sounds-en", "/tmp")
    Traceback (most recent call last):
    ...
    ValueError: asterisk-core-sounds-en is reserved for an independent check
    """
    if name.startswith(RESERVED):
        raise ValueError(f"{name} is reserved for an independent check")
    os.makedirs(folder, exist_ok=True)
    found = sorted(glob.glob(os.path.join(folder, f"{name}_*.deb")))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        logger.warning("%s: skipped, apt-get is not available here", name)
        return None
    proc = subprocess.run(
        ["apt-get", "download", name],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    found = sorted(glob.glob(os.path.join(folder, f"{name}_*.deb")))
    if proc.returncode != 0 or not found:
        logger.warning(
            "%s: skipped, apt-get download failed (%s)",
            name,
            (proc.stderr or proc.stdout).strip().splitlines()[-1:],
        )
        return None
    return found[-1]


def _deb_members(path):
    """Yields (name, bytes) of the members of a .deb (an ``ar`` archive)."""
    with open(path, "rb") as fin:
        if fin.read(8) != b"!<arch>\n":
            raise ValueError(f"{path}: not a Debian package")
        while True:
            header = fin.read(60)
            if len(header) < 60:
                return
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            data = fin.read(size)
            if size % 2:
                fin.read(1)
            yield name, data


def digit_recordings(deb, folder):
    """The ten digit recordings of a prompt package, as 16 kHz float arrays.

    Arguments
    ---------
    deb : str
        The ``.deb``.
    folder : str
        The folder of the digit files inside the package.

    Returns
    -------
    dict
        Digit (``"0"``...``"9"``) to waveform, silences trimmed.
    """
    wanted = {}
    for name, data in _deb_members(deb):
        if not name.startswith("data.tar"):
            continue
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar.getmembers():
                path = member.name.lstrip("./")
                base = os.path.basename(path)
                stem, ext = os.path.splitext(base)
                if os.path.dirname(path) == folder and stem in "0123456789":
                    if len(stem) == 1 and ext in (".gsm", ".wav"):
                        wanted[stem] = (ext, tar.extractfile(member).read())
    if sorted(wanted) != list("0123456789"):
        raise ValueError(f"{deb}: digits found {sorted(wanted)} in {folder}")
    return {d: _read(ext, data) for d, (ext, data) in wanted.items()}


def _read(ext, data):
    """Decodes one prompt (raw GSM 6.10 at 8 kHz, or WAV), 16 kHz, trimmed."""
    if ext == ".gsm":
        wav, rate = sf.read(
            io.BytesIO(data),
            format="RAW",
            subtype="GSM610",
            samplerate=8000,
            channels=1,
            dtype="float32",
        )
    else:
        wav, rate = sf.read(io.BytesIO(data), dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    wav = torchaudio.functional.resample(
        torch.from_numpy(np.ascontiguousarray(wav)), rate, SAMPLE_RATE
    ).numpy()
    return trim_silence(wav)


def trim_silence(wav, frame=320, floor_db=-35.0, margin=480):
    """Cuts the leading and trailing silence of a recording.

    Arguments
    ---------
    wav : numpy.ndarray
        The samples.
    frame : int
        Energy frame length (samples).
    floor_db : float
        Frames this far below the loudest one are silence.
    margin : int
        Samples kept either side of the speech.

    Returns
    -------
    numpy.ndarray

    Example
    -------
    >>> x = np.concatenate([np.zeros(3200), np.ones(1600), np.zeros(3200)])
    >>> len(trim_silence(x.astype(np.float32)))
    2560
    """
    n = len(wav) // frame
    energy = (wav[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12
    loud = np.nonzero(10 * np.log10(energy / energy.max()) > floor_db)[0]
    start = max(int(loud[0]) * frame - margin, 0)
    end = min((int(loud[-1]) + 1) * frame + margin, len(wav))
    return wav[start:end]


def connected_digits(recordings, text, rng, pause, gain_db, snr_db):
    """A digit string spoken with the recordings, pauses and gains drawn.

    Arguments
    ---------
    recordings : dict
        Digit to waveform (16 kHz).
    text : str
        The digits, space separated (``"4 1 7"``).
    rng : numpy.random.Generator
        Draws pauses, gains and noise.
    pause : tuple of float
        Range of the silences between digits, seconds.
    gain_db : tuple of float
        Range of each digit's gain.
    snr_db : tuple of float
        Range of the white noise's SNR.

    Returns
    -------
    numpy.ndarray
        float32 samples in [-1, 1].

    Example
    -------
    >>> rec = {d: np.ones(800, dtype=np.float32) * 0.1 for d in "0123456789"}
    >>> wav = connected_digits(rec, "1 2", np.random.default_rng(0),
    ...                        (0.1, 0.1), (0, 0), (30, 30))
    >>> len(wav), wav.dtype
    (6400, dtype('float32'))
    """
    parts = [np.zeros(int(rng.uniform(*pause) * SAMPLE_RATE))]
    for digit in text.split():
        gain = 10 ** (rng.uniform(*gain_db) / 20)
        parts.append(recordings[digit] * gain)
        parts.append(np.zeros(int(rng.uniform(*pause) * SAMPLE_RATE)))
    wav = np.concatenate(parts).astype(np.float32)
    power = float(np.mean(wav**2)) + 1e-10
    snr = rng.uniform(*snr_db)
    wav = wav + rng.standard_normal(len(wav)).astype(np.float32) * np.sqrt(
        power / 10 ** (snr / 10)
    )
    peak = float(np.abs(wav).max()) + 1e-8
    if peak > 0.99:
        wav = wav * (0.99 / peak)
    return wav.astype(np.float32)


def prepare_asterisk_digits(
    save_folder,
    packages=tuple(SPEAKERS),
    utts_per_speaker=40,
    min_digits=3,
    max_digits=5,
    pause=(0.05, 0.3),
    gain_db=(-3.0, 3.0),
    snr_db=(25.0, 40.0),
    seed=1234,
):
    """Builds the real-speech few-shot set, unless done.

    Arguments
    ---------
    save_folder : str
        Where the packages, the WAVs, ``real_digits.csv`` and
        ``real_digits.json`` go.
    packages : list of str
        Prompt packages (keys of ``SPEAKERS``).
    utts_per_speaker : int
        Digit strings per speaker.
    min_digits, max_digits : int
        Length range of the strings.
    pause, gain_db, snr_db : tuple of float
        Ranges of the pauses (s), per-digit gains and noise SNR.
    seed : int
        Everything is drawn from it.

    Returns
    -------
    str or None
        The manifest, or None if no speaker could be fetched.
    """
    config = {
        "packages": list(packages),
        "utts_per_speaker": utts_per_speaker,
        "digits": [min_digits, max_digits],
        "pause": list(pause),
        "gain_db": list(gain_db),
        "snr_db": list(snr_db),
        "seed": seed,
    }
    manifest = os.path.join(save_folder, "real_digits.csv")
    summary = os.path.join(save_folder, "real_digits.json")
    if os.path.exists(manifest) and os.path.exists(summary):
        with open(summary, encoding="utf-8") as fin:
            if json.load(fin).get("config") == config:
                return manifest
    rows, skipped = [], {}
    for package in packages:
        if package not in SPEAKERS:
            raise ValueError(f"{package}: not one of {sorted(SPEAKERS)}")
        deb = fetch_package(package, os.path.join(save_folder, "debs"))
        if deb is None:
            skipped[package] = "not fetched (see the log)"
            continue
        lang, speaker, folder = SPEAKERS[package]
        recordings = digit_recordings(deb, folder)
        out = os.path.join(save_folder, "wav", speaker)
        os.makedirs(out, exist_ok=True)
        for u in range(utts_per_speaker):
            rng = np.random.default_rng(stable_seed(seed, speaker, u))
            n = int(rng.integers(min_digits, max_digits + 1))
            text = " ".join(str(d) for d in rng.integers(0, 10, size=n))
            wav = connected_digits(
                recordings, text, rng, pause, gain_db, snr_db
            )
            utt_id = f"{speaker}_{u:03d}"
            sf.write(os.path.join(out, f"{utt_id}.wav"), wav, SAMPLE_RATE)
            rows.append(
                {
                    "ID": utt_id,
                    "duration": round(len(wav) / SAMPLE_RATE, 4),
                    "wav": os.path.join(
                        "$data_root", "wav", speaker, f"{utt_id}.wav"
                    ),
                    "spk_id": speaker,
                    "lang": lang,
                    "wrd": text,
                }
            )
    if not rows:
        logger.warning(
            "Real-speech set skipped: no prompt package could be fetched (%s)",
            skipped,
        )
        return None
    write_manifest(
        manifest, rows, ["ID", "duration", "wav", "spk_id", "lang", "wrd"]
    )
    with open(summary, "w", encoding="utf-8") as fout:
        json.dump(
            {"config": config, "skipped": skipped, "utterances": len(rows)},
            fout,
            indent=2,
        )
    logger.info(
        "Real-speech digits: %d utterances in %s (skipped: %s)",
        len(rows),
        save_folder,
        skipped or "none",
    )
    return manifest
