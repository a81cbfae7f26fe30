#!/usr/bin/env python3
"""How the synthetic voices and the recorded ones differ, in numbers.

For each language of a SynthDigits manifest and each speaker of the
real-speech set: the mean duration, the share of speech frames (10 ms
frames within 20 dB of the utterance's loudest), the time per digit, and
the long-term average spectrum of the speech frames in five bands, in dB
relative to the 0-4 kHz energy (the narrowband front end's range).

Usage::

    python voice_statistics.py DATA_FOLDER [--utterances 60]

``DATA_FOLDER`` is a SynthDigits folder (``train.csv``, ``dev.csv``,
``real/real_digits.csv``). Prints a markdown table.

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import csv
import os

import numpy as np
import soundfile as sf

BANDS = [(0, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000)]
FRAME = 160  # 10 ms at 16 kHz
WINDOW = 512


def utterance_statistics(wav):
    """Duration (s), speech-frame share and power spectrum of one waveform.

    Arguments
    ---------
    wav : numpy.ndarray
        16 kHz samples.

    Returns
    -------
    tuple
        ``(duration, speech_share, spectrum)``; ``spectrum`` is the mean
        power spectrum (``WINDOW // 2 + 1`` bins) of the speech frames.

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> wav = np.concatenate([np.sin(2 * np.pi * 440 * t), np.zeros(16000)])
    >>> duration, share, spectrum = utterance_statistics(wav)
    >>> duration, round(share, 2), int(np.argmax(spectrum) * 16000 / 512)
    (2.0, 0.5, 437)
    """
    frames = wav[: len(wav) // FRAME * FRAME].reshape(-1, FRAME)
    energy = (frames**2).mean(axis=1)
    speech = energy > energy.max() * 0.01  # within 20 dB of the loudest
    blocks = wav[: len(wav) // WINDOW * WINDOW].reshape(-1, WINDOW)
    block_energy = (blocks**2).mean(axis=1)
    loud = blocks[block_energy > block_energy.max() * 0.01]
    power = np.abs(np.fft.rfft(loud * np.hanning(WINDOW), axis=1)) ** 2
    return len(wav) / 16000, float(speech.mean()), power.mean(axis=0)


def group_statistics(manifest, key, root, limit):
    """Per group (``key`` column) of a manifest: one table row each."""
    groups = {}
    with open(manifest, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows = groups.setdefault(row[key], [])
            if len(rows) < limit:
                rows.append(row)
    freqs = np.fft.rfftfreq(WINDOW, 1 / 16000)
    table = []
    for name, rows in sorted(groups.items()):
        durations, shares, digits, spectrum = [], [], [], 0
        for row in rows:
            wav, _ = sf.read(row["wav"].replace("$data_root", root))
            duration, share, power = utterance_statistics(wav)
            durations.append(duration)
            shares.append(share)
            digits.append(len(row["wrd"].split()))
            spectrum = spectrum + power
        total = spectrum[freqs < 4000].sum()
        bands = [
            10 * np.log10(spectrum[(freqs >= lo) & (freqs < hi)].sum() / total)
            for lo, hi in BANDS
        ]
        table.append(
            [name, len(rows), np.mean(durations), np.mean(shares)]
            + [np.sum(durations) / np.sum(digits)]
            + bands
        )
    return table


def main(argv=None):
    """Prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_folder")
    parser.add_argument("--utterances", type=int, default=60)
    args = parser.parse_args(argv)
    sets = [
        ("train", os.path.join(args.data_folder, "train.csv"), "lang"),
        ("dev", os.path.join(args.data_folder, "dev.csv"), "lang"),
        (
            "real",
            os.path.join(args.data_folder, "real", "real_digits.csv"),
            "spk_id",
        ),
    ]
    bands = [f"{lo}-{hi} Hz dB" for lo, hi in BANDS]
    print(
        "| set | group | utterances | duration s | speech share | s per digit"
        " | " + " | ".join(bands) + " |"
    )
    print("|---" * (6 + len(bands)) + "|")
    for name, manifest, key in sets:
        if not os.path.exists(manifest):
            print(f"| {name} | (no {manifest}) |" + " |" * (4 + len(bands)))
            continue
        root = os.path.dirname(manifest)
        for row in group_statistics(manifest, key, root, args.utterances):
            cells = [name, row[0], str(row[1])]
            cells += [f"{row[2]:.2f}", f"{row[3]:.2f}", f"{row[4]:.2f}"]
            cells += [f"{v:.1f}" for v in row[5:]]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
