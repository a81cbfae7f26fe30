#!/usr/bin/env python3
"""Exported models on each evaluation set: in padded batches and alone.

A model whose RNN runs over the padding of a batch (SpeechBrain's CRDNN,
which gives its LSTMs no lengths) transcribes an utterance in a batch
differently from the same utterance alone (``transcribe_file``); one
given the lengths (``speechbrain_meta.crdnn.LengthsCapableCRDNN``) should
not. For every exported model (``AdaptiveASR``, unadapted) and every set
of the corpus (unseen languages, unseen voices, real voices), this script
transcribes up to ``--utterances`` utterances (a seeded shuffle of the
set) in padded batches of ``--batch_size`` and one by one, and writes the
CER of both (SpeechBrain's ``ErrorRateStats`` over characters, pooled over
the utterances, as the few-shot protocol scores a task).

Usage::

    python batch_vs_alone.py --data_folder DIR/data --output_folder OUT \
        NAME=EXPORT_FOLDER [NAME=EXPORT_FOLDER ...]

``EXPORT_FOLDER`` is a run's ``inference`` folder (``DIR/seed<S>/joint/
inference``). Writes ``OUT/batch_vs_alone.{json,md}``.

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import csv
import json
import os
import random
import sys

import torch

from speechbrain_meta.asr import transcript_error_rates

SETS = {
    "unseen languages": "test.csv",
    "unseen voices": "test_voices.csv",
    "real voices": os.path.join("real", "real_digits.csv"),
}


def padded(wavs):
    """One padded batch of waveforms and their relative lengths.

    Arguments
    ---------
    wavs : list of torch.Tensor
        1-D waveforms.

    Returns
    -------
    tuple
        ``(batch [B, T], relative lengths [B])``.

    Example
    -------
    >>> batch, lens = padded([torch.ones(4), torch.ones(2)])
    >>> batch.tolist(), lens.tolist()
    ([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]], [1.0, 0.5])
    """
    longest = max(len(w) for w in wavs)
    batch = torch.stack(
        [torch.nn.functional.pad(w, (0, longest - len(w))) for w in wavs]
    )
    return batch, torch.tensor([len(w) / longest for w in wavs])


def transcribe_alone(asr, wavs):
    """Each waveform transcribed alone, as ``transcribe_file`` does.

    Arguments
    ---------
    asr : AdaptiveASR
        The model.
    wavs : list of torch.Tensor
        1-D waveforms.

    Returns
    -------
    list of str
    """
    return [
        asr.transcribe_batch(w.unsqueeze(0), torch.ones(1))[0][0] for w in wavs
    ]


def batch_and_alone(asr, wavs, references, batch_size):
    """The model's CER on utterances in padded batches, and one by one.

    Arguments
    ---------
    asr : AdaptiveASR
        The model (unadapted).
    wavs : list of torch.Tensor
        The utterances, in the order they are batched.
    references : list of str
        Their transcripts.
    batch_size : int
        Utterances per padded batch.

    Returns
    -------
    dict
        ``batch``, ``alone`` (CER) and ``utterances``.
    """
    in_batches = []
    for start in range(0, len(wavs), batch_size):
        batch, lens = padded(wavs[start : start + batch_size])
        in_batches += asr.transcribe_batch(batch, lens)[0]
    alone = transcribe_alone(asr, wavs)
    return {
        "batch": transcript_error_rates(in_batches, references)[0],
        "alone": transcript_error_rates(alone, references)[0],
        "utterances": len(wavs),
    }


def read_set(path, utterances, seed=0):
    """Up to ``utterances`` (wav, transcript) pairs of a manifest, shuffled.

    Arguments
    ---------
    path : str
        The set's CSV (``$data_root`` is its folder).
    utterances : int
        How many to keep.
    seed : int
        The shuffle's seed.

    Returns
    -------
    tuple
        ``(waveforms, transcripts)``.
    """
    from speechbrain.dataio.dataio import read_audio

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    random.Random(seed).shuffle(rows)
    rows = rows[:utterances]
    root = os.path.dirname(path)
    wavs = [read_audio(r["wav"].replace("$data_root", root)) for r in rows]
    return wavs, [r["wrd"] for r in rows]


def read_sets(data_folder, utterances):
    """Every set of the corpus that is there, read by ``read_set``.

    Arguments
    ---------
    data_folder : str
        The corpus folder (``DIR/data`` of a main job).
    utterances : int
        Utterances kept per set.

    Returns
    -------
    dict
        Set name (``SETS``) to ``(waveforms, transcripts)``.
    """
    return {
        name: read_set(os.path.join(data_folder, f), utterances)
        for name, f in SETS.items()
        if os.path.exists(os.path.join(data_folder, f))
    }


def exported_models(specs, output_folder):
    """The exported models named on a command line, loaded one at a time.

    Arguments
    ---------
    specs : list of str
        ``NAME=EXPORT_FOLDER`` each.
    output_folder : str
        Where ``AdaptiveASR`` copies them (``load/NAME``).

    Yields
    ------
    tuple
        ``(name, AdaptiveASR)``.
    """
    from speechbrain_meta.inference import AdaptiveASR

    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep:
            raise ValueError(f"{spec!r}: expected NAME=EXPORT_FOLDER")
        yield (
            name,
            AdaptiveASR.from_hparams(
                source=os.path.abspath(folder),
                savedir=os.path.join(output_folder, "load", name),
            ),
        )


def models_and_sets_parser(description):
    """The command line of a script that scores exported models on the
    corpus's sets: ``NAME=EXPORT_FOLDER ...``, ``--data_folder``,
    ``--output_folder``, ``--utterances`` (per set).

    Arguments
    ---------
    description : str
        The script's.

    Returns
    -------
    argparse.ArgumentParser
        To add the script's own options to.

    Example
    -------
    >>> args = models_and_sets_parser("x").parse_args(
    ...     ["a=b", "--data_folder", "d", "--output_folder", "o"])
    >>> args.models, args.utterances
    (['a=b'], 200)
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("models", nargs="+", help="NAME=EXPORT_FOLDER")
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--utterances", type=int, default=200)
    return parser


def markdown(results, batch_size):
    """The results as a markdown table.

    Arguments
    ---------
    results : list of dict
        Rows with ``model``, ``set``, ``utterances``, ``batch``, ``alone``.
    batch_size : int
        The batches' size, for the header.

    Returns
    -------
    str

    Example
    -------
    >>> row = {"model": "a", "set": "real voices", "utterances": 2,
    ...        "batch": 0.5, "alone": 0.25}
    >>> print(markdown([row], 10).splitlines()[2])
    | a | real voices | 2 | 50.0 | 25.0 | -25.0 |
    """
    lines = [
        f"| model | set | utterances | CER % in padded batches of "
        f"{batch_size} | CER % alone | alone - batch |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['set']} | {r['utterances']} | "
            f"{100 * r['batch']:.1f} | {100 * r['alone']:.1f} | "
            f"{100 * (r['alone'] - r['batch']):+.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Scores every model on every set, writes the JSON and the table.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments.
    """
    parser = models_and_sets_parser(__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=10)
    args = parser.parse_args(argv)
    os.makedirs(args.output_folder, exist_ok=True)
    sets = read_sets(args.data_folder, args.utterances)
    results = []
    for name, asr in exported_models(args.models, args.output_folder):
        for set_name, (wavs, references) in sets.items():
            row = batch_and_alone(asr, wavs, references, args.batch_size)
            results.append({"model": name, "set": set_name, **row})
            print(markdown(results[-1:], args.batch_size).splitlines()[-1])
    out = os.path.join(args.output_folder, "batch_vs_alone")
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump({"command": sys.argv, "results": results}, f, indent=2)
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(results, args.batch_size))


if __name__ == "__main__":
    main()
