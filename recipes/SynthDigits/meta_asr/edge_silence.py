#!/usr/bin/env python3
"""What exported models write where nobody speaks.

A recording starts and ends with silence (and the microphone's noise under
it); espeak-ng's speech starts and stops within milliseconds of the first
and last sound. A model trained only on the latter may write digits in
the silence. For every exported model (``AdaptiveASR``, unadapted, each
utterance transcribed alone as ``transcribe_file`` does) this script
measures:

* the words it writes for 1 s of digital silence and for 1 s of white
  noise at -50 dBFS (a quiet room through a microphone);
* on every set of the corpus (unseen languages, unseen voices, real
  voices), the CER and its insertions, deletions and substitutions (per
  100 reference characters, SpeechBrain's ``ErrorRateStats`` count);
* on the synthetic sets, the CER again with ``--pad`` seconds of silence
  before and after each utterance, white noise at the level of the
  utterance's quietest 20 ms (its own noise floor), as
  ``speechbrain_meta.augment.EdgeSilence`` adds in training.

Usage::

    python edge_silence.py --data_folder DIR/data --output_folder OUT \
        NAME=EXPORT_FOLDER [NAME=EXPORT_FOLDER ...]

Writes ``OUT/edge_silence.{json,md}``.

Authors
 * speechbrain-meta developers 2026
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from batch_vs_alone import (  # noqa: E402
    exported_models,
    models_and_sets_parser,
    read_sets,
    transcribe_alone,
)

from speechbrain_meta.asr import transcript_error_stats  # noqa: E402
from speechbrain_meta.augment import EdgeSilence  # noqa: E402

SAMPLE_RATE = 16000


def with_edges(wavs, seconds):
    """Each utterance with ``seconds`` of its noise floor on either side
    (``EdgeSilence``, the training augmentation, at its quietest frame).

    Arguments
    ---------
    wavs : list of torch.Tensor
        1-D waveforms.
    seconds : float
        Silence on each side.

    Returns
    -------
    list of torch.Tensor

    Example
    -------
    >>> [len(w) for w in with_edges([torch.ones(960), torch.ones(320)], 0.1)]
    [4160, 3520]
    """
    silence = EdgeSilence(
        seconds, seconds, share=1.0, sample_rate=SAMPLE_RATE, floor_quantile=0
    )
    return [silence(w[None], torch.ones(1))[0][0] for w in wavs]


def error_counts(hypotheses, references):
    """CER and its insertions, deletions and substitutions, per reference
    character (SpeechBrain's count: words split into characters, ``_``
    between words).

    Arguments
    ---------
    hypotheses, references : list of str
        Transcripts.

    Returns
    -------
    dict
        ``cer``, ``insertions``, ``deletions``, ``substitutions``
        (fractions of the reference tokens).

    Example
    -------
    >>> counts = error_counts(["5 1 2"], ["1 2"])
    >>> counts["insertions"], round(counts["cer"], 4)
    (0.6667, 0.6667)
    """
    s = transcript_error_stats(hypotheses, references)[0].summarize()
    total = max(s["num_scored_tokens"], 1)
    return {
        "cer": s["error_rate"] / 100,
        **{
            k: round(s[k] / total, 4)
            for k in ("insertions", "deletions", "substitutions")
        },
    }


def probe(asr, sets, pad, seed=0):
    """One model's rows: silence, and every set with and without edges.

    Arguments
    ---------
    asr : AdaptiveASR
        The model (unadapted).
    sets : dict
        Set name to ``(waveforms, transcripts)``.
    pad : float
        Seconds of silence added on each side of the synthetic sets.
    seed : int
        The noise's seed.

    Returns
    -------
    dict
        ``silence`` (what it writes for 1 s of zeros and of noise) and
        ``sets`` (set name to ``error_counts``, and ``cer_with_edges``).
    """
    torch.manual_seed(seed)
    quiet = torch.randn(SAMPLE_RATE) * 10 ** (-50 / 20)
    zeros, noise = transcribe_alone(asr, [torch.zeros(SAMPLE_RATE), quiet])
    out = {"silence": {"zeros_1s": zeros, "noise_1s_-50dBFS": noise}}
    out["sets"] = {}
    for name, (wavs, references) in sets.items():
        row = error_counts(transcribe_alone(asr, wavs), references)
        row["utterances"] = len(wavs)
        if name != "real voices":  # real recordings have their own edges
            padded = with_edges(wavs, pad)
            row["cer_with_edges"] = error_counts(
                transcribe_alone(asr, padded), references
            )["cer"]
        out["sets"][name] = row
    return out


def markdown(results, pad):
    """The results as markdown tables.

    Arguments
    ---------
    results : dict
        Model name to ``probe``'s output.
    pad : float
        The edges' length, for the header.

    Returns
    -------
    str

    Example
    -------
    >>> one = {"silence": {"zeros_1s": "6 6", "noise_1s_-50dBFS": ""},
    ...        "sets": {"real voices": {"cer": 0.5, "insertions": 0.25,
    ...        "deletions": 0.0, "substitutions": 0.25, "utterances": 2}}}
    >>> print(markdown({"a": one}, 0.3).splitlines()[2])
    | a | `6 6` | `` |
    """
    lines = [
        "| model | 1 s of zeros | 1 s of noise at -50 dBFS |",
        "|---|---|---|",
    ]
    for name, r in results.items():
        s = r["silence"]
        lines.append(
            f"| {name} | `{s['zeros_1s']}` | `{s['noise_1s_-50dBFS']}` |"
        )
    lines += [
        "",
        f"| model | set | utterances | CER % | insertions | deletions | "
        f"substitutions | CER % with {pad} s of silence each side |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for set_name, row in r["sets"].items():
            edges = row.get("cer_with_edges")
            lines.append(
                f"| {name} | {set_name} | {row['utterances']} | "
                f"{100 * row['cer']:.1f} | {100 * row['insertions']:.1f} | "
                f"{100 * row['deletions']:.1f} | "
                f"{100 * row['substitutions']:.1f} | "
                + ("-" if edges is None else f"{100 * edges:.1f}")
                + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Probes every model, writes the JSON and the tables.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments.
    """
    parser = models_and_sets_parser(__doc__.split("\n")[0])
    parser.add_argument("--pad", type=float, default=0.3)
    args = parser.parse_args(argv)
    os.makedirs(args.output_folder, exist_ok=True)
    sets = read_sets(args.data_folder, args.utterances)
    results = {}
    for name, asr in exported_models(args.models, args.output_folder):
        results[name] = probe(asr, sets, args.pad)
    document = {"command": " ".join(sys.argv), "pad_s": args.pad}
    document["results"] = results
    with open(os.path.join(args.output_folder, "edge_silence.json"), "w") as f:
        json.dump(document, f, indent=2)
    table = markdown(results, args.pad)
    with open(os.path.join(args.output_folder, "edge_silence.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
