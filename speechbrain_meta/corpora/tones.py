"""A tiny synthetic speech-like corpus made of tone sequences.

Each *task* is a synthetic "speaker" that renders a small alphabet as tone
bursts: a symbol has a base frequency and a timbre shared by every task, and
each task transforms them (a pitch scale, a tempo, and a few swapped symbol
sounds). A model trained on some tasks must therefore adapt to a new task's
mapping from a few utterances: a minimal, fully offline meta-ASR problem for
tests and the quickstart. It needs no network, no model and no speech
synthesiser, and builds in seconds.

Output: 16 kHz mono WAV files and SpeechBrain CSV manifests with the
columns ``ID, duration, wav, spk_id, wrd``; the splits have disjoint tasks.

Authors
 * speechbrain-meta developers 2026
"""

import json
import os

import numpy as np
import soundfile as sf
from speechbrain.utils.logger import get_logger

from speechbrain_meta.data.manifest import write_manifest

logger = get_logger(__name__)

SAMPLE_RATE = 16000


def _task_voice(task_index, n_symbols, seed, n_swaps):
    """The per-task rendering: frequency per symbol, pitch and tempo."""
    rng = np.random.default_rng([seed, 7919, task_index])
    base = 260.0 * (1.18 ** np.arange(n_symbols))
    perm = np.arange(n_symbols)
    for _ in range(n_swaps):
        i, j = rng.choice(n_symbols, size=2, replace=False)
        perm[i], perm[j] = perm[j], perm[i]
    return {
        "freqs": base[perm] * rng.uniform(0.85, 1.2),
        "tempo": rng.uniform(0.8, 1.25),
        "harmonic": rng.uniform(1.5, 3.0),
    }


def synthesize(symbols, voice, rng, snr_db=20.0, sample_rate=SAMPLE_RATE):
    """Renders a symbol-index sequence with a task's voice.

    Arguments
    ---------
    symbols : list of int
        Indices into the alphabet.
    voice : dict
        ``freqs`` (per symbol), ``tempo`` and ``harmonic``.
    rng : numpy.random.Generator
        For durations, gaps and noise.
    snr_db : float
        Signal-to-noise ratio of the added white noise.
    sample_rate : int
        Sampling rate in Hz.

    Returns
    -------
    numpy.ndarray
        float32 waveform in [-1, 1].

    Example
    -------
    >>> voice = {"freqs": [300.0, 400.0], "tempo": 1.0, "harmonic": 2.0}
    >>> wav = synthesize([0, 1, 0], voice, np.random.default_rng(0))
    >>> wav.dtype, 0.3 < len(wav) / 16000 < 0.8
    (dtype('float32'), True)
    """
    pieces = [np.zeros(int(0.05 * sample_rate))]
    for s in symbols:
        dur = rng.uniform(0.07, 0.12) / voice["tempo"]
        n = int(dur * sample_rate)
        t = np.arange(n) / sample_rate
        f = voice["freqs"][s]
        tone = np.sin(2 * np.pi * f * t) + 0.5 * np.sin(
            2 * np.pi * voice["harmonic"] * f * t
        )
        env = np.hanning(n)
        pieces.append(tone * env)
        pieces.append(np.zeros(int(rng.uniform(0.02, 0.05) * sample_rate)))
    wav = np.concatenate(pieces)
    wav = wav / (np.abs(wav).max() + 1e-9) * 0.5
    noise_rms = np.sqrt(np.mean(wav**2)) / (10 ** (snr_db / 20))
    wav = wav + rng.normal(0.0, noise_rms, size=wav.shape)
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


def prepare_tone_tasks(
    save_folder,
    n_train_tasks=12,
    n_dev_tasks=3,
    n_test_tasks=3,
    utts_per_task=20,
    alphabet="abcdef",
    min_len=3,
    max_len=6,
    n_swaps=2,
    seed=1234,
):
    """Builds the tone-task corpus and its manifests (skips if up to date).

    Arguments
    ---------
    save_folder : str
        Where ``wav/``, ``train.csv``, ``dev.csv``, ``test.csv`` and
        ``corpus.json`` are written.
    n_train_tasks : int
        Meta-train tasks.
    n_dev_tasks : int
        Meta-dev tasks (model selection).
    n_test_tasks : int
        Meta-test tasks.
    utts_per_task : int
        Utterances per task.
    alphabet : str
        The symbols (one character each, also the labels).
    min_len : int
        Minimum symbols per utterance.
    max_len : int
        Maximum symbols per utterance.
    n_swaps : int
        Symbol-sound swaps per task (how different tasks are).
    seed : int
        Everything is deterministic given the seed.

    Returns
    -------
    dict
        Paths of the manifests, by split.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> paths = prepare_tone_tasks(str(tmp), 2, 1, 1, utts_per_task=3)
    >>> sorted(paths)
    ['dev', 'test', 'train']
    """
    config = dict(
        n_train_tasks=n_train_tasks,
        n_dev_tasks=n_dev_tasks,
        n_test_tasks=n_test_tasks,
        utts_per_task=utts_per_task,
        alphabet=alphabet,
        min_len=min_len,
        max_len=max_len,
        n_swaps=n_swaps,
        seed=seed,
    )
    splits = {
        "train": range(0, n_train_tasks),
        "dev": range(n_train_tasks, n_train_tasks + n_dev_tasks),
        "test": range(
            n_train_tasks + n_dev_tasks,
            n_train_tasks + n_dev_tasks + n_test_tasks,
        ),
    }
    paths = {s: os.path.join(save_folder, f"{s}.csv") for s in splits}
    info_path = os.path.join(save_folder, "corpus.json")
    if os.path.exists(info_path) and all(map(os.path.exists, paths.values())):
        with open(info_path, encoding="utf-8") as f:
            if json.load(f).get("config") == config:
                logger.info("Tone-task corpus up to date in %s", save_folder)
                return paths
    wav_dir = os.path.join(save_folder, "wav")
    os.makedirs(wav_dir, exist_ok=True)
    counts = {}
    for split, task_indices in splits.items():
        rows = []
        for task_index in task_indices:
            task = f"task{task_index:03d}"
            voice = _task_voice(task_index, len(alphabet), seed, n_swaps)
            rng = np.random.default_rng([seed, 104729, task_index])
            for u in range(utts_per_task):
                length = int(rng.integers(min_len, max_len + 1))
                symbols = rng.integers(0, len(alphabet), size=length).tolist()
                wav = synthesize(symbols, voice, rng)
                utt_id = f"{task}_{u:04d}"
                path = os.path.join(wav_dir, utt_id + ".wav")
                sf.write(path, wav, SAMPLE_RATE, subtype="PCM_16")
                rows.append(
                    {
                        "ID": utt_id,
                        "duration": f"{len(wav) / SAMPLE_RATE:.4f}",
                        "wav": path,
                        "spk_id": task,
                        "wrd": "".join(alphabet[s] for s in symbols),
                    }
                )
        write_manifest(
            paths[split], rows, ["ID", "duration", "wav", "spk_id", "wrd"]
        )
        counts[split] = {"tasks": len(task_indices), "utterances": len(rows)}
    with open(info_path, "w", encoding="utf-8") as f:
        json.dump({"config": config, "counts": counts}, f, indent=2)
    logger.info("Tone-task corpus written to %s: %s", save_folder, counts)
    return paths
