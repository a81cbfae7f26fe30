"""Simulated room impulse responses, for SpeechBrain's ``AddReverb``.

No recorded impulse responses can be downloaded here, so the recipes
simulate them with the statistical model of late reverberation (Polack,
1988): a direct-path impulse, a few early reflections, and a tail of
Gaussian noise whose energy decays exponentially, by 60 dB in the room's
reverberation time RT60. The tail decays faster at high frequencies (air
and wall absorption), modelled by splitting it into a low and a high band
with their own RT60. Each response is drawn from a generator seeded by
``(seed, index)``: the same seed gives the same files.

The folder gets ``rir_<i>.wav`` (16 kHz) and ``rirs.csv`` in the format
``AddReverb`` reads (``ID, duration, wav, wav_format, wav_opts``).

Authors
 * speechbrain-meta developers 2026
"""

import csv
import json
import os

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from speechbrain_meta.data.manifest import write_manifest
from speechbrain_meta.data.tasks import stable_seed


def simulated_rir(rng, sample_rate=16000, rt60=(0.2, 0.8), drr_db=(0, 12)):
    """One room impulse response from the statistical reverberation model.

    Arguments
    ---------
    rng : numpy.random.Generator
        Draws the room.
    sample_rate : int
        Samples per second.
    rt60 : tuple of float
        Range of the reverberation time (s) of the low band; the high band
        decays in 0.4-0.8 of it.
    drr_db : tuple of float
        Range of the direct-to-reverberant energy ratio (dB).

    Returns
    -------
    numpy.ndarray
        float32 response, its peak (the direct path) at 1.0, ``1.2 * RT60``
        long.

    Example
    -------
    >>> h = simulated_rir(np.random.default_rng(0), rt60=(0.3, 0.3))
    >>> len(h) / 16000, int(np.argmax(np.abs(h))), float(np.abs(h).max())
    (0.36, 0, 1.0)
    >>> late = h[int(0.2 * 16000):]  # decayed by 40 dB at 0.2 s of 0.3 s
    >>> bool(np.sqrt(np.mean(late ** 2)) < 0.02 * np.sqrt(np.mean(h ** 2)))
    True
    """
    t60 = float(rng.uniform(*rt60))
    t60_high = t60 * float(rng.uniform(0.4, 0.8))
    length = int(1.2 * t60 * sample_rate)
    t = np.arange(length) / sample_rate
    low, high = rng.standard_normal((2, length))
    # Split white noise at ~2 kHz (a one-pole filter) into two bands.
    alpha = np.exp(-2 * np.pi * 2000 / sample_rate)
    low = lfilter([1 - alpha], [1, -alpha], low)
    high = high - low
    tail = low * np.exp(-6.908 * t / t60) + high * np.exp(-6.908 * t / t60_high)
    tail[: int(0.002 * sample_rate)] = 0.0  # reflections come after 2 ms
    for _ in range(int(rng.integers(2, 6))):  # early reflections
        at = int(rng.uniform(0.002, 0.03) * sample_rate)
        tail[at] += float(rng.uniform(0.2, 0.7)) * rng.choice([-1.0, 1.0])
    drr = 10 ** (float(rng.uniform(*drr_db)) / 10)
    tail *= np.sqrt(1.0 / (drr * (np.sum(tail**2) + 1e-12)))
    tail[0] = 1.0  # the direct path
    return (tail / np.abs(tail).max()).astype(np.float32)


def prepare_simulated_rirs(
    save_folder, count=200, rt60=(0.2, 0.8), drr_db=(0, 12), seed=1234
):
    """Writes ``count`` simulated responses and their CSV, unless done.

    Arguments
    ---------
    save_folder : str
        Where ``rir_<i>.wav`` and ``rirs.csv`` go.
    count : int
        Responses.
    rt60 : tuple of float
        Reverberation-time range (s).
    drr_db : tuple of float
        Direct-to-reverberant ratio range (dB).
    seed : int
        Same seed, same files.

    Returns
    -------
    str
        The CSV's path.

    Example
    -------
    >>> import tempfile
    >>> path = prepare_simulated_rirs(tempfile.mkdtemp(), count=2)
    >>> with open(path) as f:
    ...     f.readline().strip()
    'ID,duration,wav,wav_format,wav_opts'
    """
    config = {
        "count": count,
        "rt60": list(rt60),
        "drr_db": list(drr_db),
        "seed": seed,
    }
    path = os.path.join(save_folder, "rirs.csv")
    summary = os.path.join(save_folder, "rirs.json")
    if os.path.exists(path) and os.path.exists(summary):
        with open(summary, encoding="utf-8") as fin:
            if json.load(fin) == config:
                # SpeechBrain's augmenters read the paths as written: a
                # folder that was moved or linked gets its CSV rewritten.
                with open(path, newline="", encoding="utf-8") as fin:
                    first = next(csv.DictReader(fin), {}).get("wav")
                if first != _rir_path(save_folder, 0):
                    _write_rir_csv(path, save_folder, count)
                return path
    os.makedirs(save_folder, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng(stable_seed(seed, "rir", i))
        rir = simulated_rir(rng, 16000, rt60, drr_db)
        sf.write(_rir_path(save_folder, i), rir, 16000, subtype="FLOAT")
    _write_rir_csv(path, save_folder, count)
    with open(summary, "w", encoding="utf-8") as fout:
        json.dump(config, fout)
    return path


def _rir_path(folder, index):
    return os.path.join(os.path.abspath(folder), f"rir_{index:04d}.wav")


def _write_rir_csv(path, folder, count):
    """The responses' CSV with absolute paths, written whole (replaced
    atomically: runs that share the folder may read it meanwhile).
    """
    rows = []
    for i in range(count):
        wav = _rir_path(folder, i)
        rows.append(
            {
                "ID": f"rir_{i:04d}",
                "duration": round(sf.info(wav).frames / 16000, 4),
                "wav": wav,
                "wav_format": "wav",
                "wav_opts": "",
            }
        )
    write_manifest(path, rows)
