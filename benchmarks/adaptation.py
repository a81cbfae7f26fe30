#!/usr/bin/env python3
"""Adaptation and decoding cost of an exported model (``AdaptiveASR``).

On one exported model (by default the quick main job's ``fomaml``) and one
unseen voice of its test set:

* **adaptation**: ``AdaptiveASR.adapt`` on k = 10 utterances for the
  model's exported number of steps S, without and with validation (the
  steps chosen by cross-validation over the support),
  against the floor: S plain SpeechBrain ``fit_batch`` steps (forward,
  backward, SGD step) of the same model on the same 10 utterances;
* **adaptation without transcripts**: ``AdaptiveASR.adapt`` on the same
  10 utterances' audio alone (the model's ``unsupervised_adaptation``,
  entropy minimisation, without and with validation) against the
  supervised adaptation measured in the same run, both in seconds of
  adaptation per second of support audio;
* **decoding**: real-time factor of ``transcribe_batch`` (one utterance
  at a time, greedy CTC) with a task state against without one.

Prints a markdown table, writes ``DIR/adaptation.json`` (rows as in
``timing.report``).

    python benchmarks/adaptation.py [--model DIR] [--csv CSV] [--json DIR]

Authors
 * speechbrain-meta developers 2026
"""

import copy
import csv
import os
import sys
import tempfile

import speechbrain as sb
import torch
from timing import benchmark_parser, measure_interleaved, report, row

from speechbrain_meta.asr import CTCASR
from speechbrain_meta.data.checks import read_audio
from speechbrain_meta.inference import AdaptiveASR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(ROOT, "results", "SynthDigits", "benchmark_quick")


class _PlainCTC(CTCASR):
    """SpeechBrain's own training step on the same model (the floor)."""

    def on_stage_start(self, stage, epoch=None):
        pass


def parse_args(argv):
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--model",
        default=os.path.join(QUICK, "seed1234", "fomaml", "inference"),
        help="an exported model folder (default: the quick main job's "
        "fomaml; run `bash scripts/run_main.sh --quick` first)",
    )
    parser.add_argument(
        "--csv",
        default=os.path.join(QUICK, "data", "test_voices.csv"),
        help="utterances (wav, wrd, spk_id) of unseen voices",
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--queries", type=int, default=20, help="utterances decoded (at most)"
    )
    return parser.parse_args(argv)


def _voice(path, n):
    """The speaker of a manifest with the most utterances (at least n)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    root = os.path.dirname(os.path.abspath(path))
    by = {}
    for r in rows:
        by.setdefault(r["spk_id"], []).append(
            (r["wav"].replace("$data_root", root), r["wrd"])
        )
    spk = max(by, key=lambda s: len(by[s]))
    if len(by[spk]) < n:
        raise SystemExit(f"{path}: no speaker with {n} utterances")
    return spk, by[spk]


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not os.path.isdir(args.model):
        raise SystemExit(
            f"{args.model}: no exported model; run "
            "`bash scripts/run_main.sh --quick` first or give --model"
        )
    torch.manual_seed(0)
    asr = AdaptiveASR.from_hparams(
        source=os.path.abspath(args.model),
        savedir=tempfile.mkdtemp(),
        run_opts={"device": args.device},
    )
    sync = torch.cuda.synchronize if "cuda" in args.device else None
    speaker, utts = _voice(args.csv, args.k + 1)
    support = utts[: args.k]
    queries = utts[args.k : args.k + args.queries]
    wavs = [w for w, _ in support]
    texts = [t for _, t in support]
    steps = asr.adaptation.steps

    state = asr.adapt(wavs, texts, safe=False)

    # The floor: S plain fit_batch steps on a copy of the same modules.
    examples = [asr.utterance(w, t) for w, t in support]
    batch = sb.dataio.batch.PaddedBatch(examples)
    plain = _PlainCTC(
        modules=copy.deepcopy(dict(asr.mods.items())),
        opt_class=lambda p: torch.optim.SGD(p, lr=1e-3),
        hparams=dict(asr.brain.hparams.__dict__),
        run_opts={"device": args.device},
    )
    plain.tokenizer = asr.hparams.label_encoder
    plain.modules.train()
    plain.init_optimizers()

    def floor():
        for _ in range(steps):
            plain.fit_batch(batch)

    # Timed in turn, repeat by repeat (this VM's speed drifts over minutes).
    adapt, safe, plain_steps, unsupervised, unsupervised_safe = (
        measure_interleaved(
            [
                lambda: asr.adapt(wavs, texts, safe=False),
                lambda: asr.adapt(wavs, texts),
                floor,
                lambda: asr.adapt(wavs, safe=False),
                lambda: asr.adapt(wavs),
            ],
            args.repeats,
            sync=sync,
        )
    )
    support_seconds = sum(e["sig"].shape[0] for e in examples) / (
        asr.hparams.sample_rate
    )

    def per_audio_second(timing):
        return {k: v / support_seconds for k, v in timing.items()}

    audio = [
        read_audio(w, asr.hparams.sample_rate).to(args.device)
        for w, _ in queries
    ]
    seconds = sum(len(a) for a in audio) / asr.hparams.sample_rate

    def decode(task_state):
        def run():
            for a in audio:
                asr.transcribe_batch(
                    a.unsqueeze(0), torch.ones(1), task_state=task_state
                )

        return run

    with_state, without = measure_interleaved(
        [decode(state), decode(None)], args.repeats, sync=sync
    )
    rtf = {
        name: {k: v / seconds for k, v in t.items()}
        for name, t in (("with", with_state), ("without", without))
    }
    rows = [
        row(
            f"adapt k={args.k}, {steps} steps (ours) vs {steps} plain "
            "fit_batch steps",
            adapt,
            plain_steps,
            peer_name="Brain.fit_batch x steps",
        ),
        row(
            f"validated adapt k={args.k} (steps by cross-validation) vs plain",
            safe,
            plain_steps,
            peer_name="Brain.fit_batch x steps",
        ),
        row(
            f"adapt without transcripts k={args.k} "
            f"({asr.unsupervised_adaptation.steps} steps) vs with "
            f"({steps} steps), per s of support audio "
            f"({support_seconds:.1f} s)",
            per_audio_second(unsupervised),
            per_audio_second(adapt),
            unit="s/s",
            peer_name="adapt with transcripts",
        ),
        row(
            f"validated adapt without transcripts k={args.k} vs validated "
            "with, per s of support audio",
            per_audio_second(unsupervised_safe),
            per_audio_second(safe),
            unit="s/s",
            peer_name="validated adapt with transcripts",
        ),
        row(
            f"decode RTF with task state vs without ({len(audio)} utts, "
            f"{seconds:.1f} s of audio)",
            rtf["with"],
            rtf["without"],
            unit="RTF",
            goal=1.1,
            peer_name="transcribe_batch without state",
        ),
    ]
    table = report(
        "adaptation",
        rows,
        args.json,
        settings={
            "model": os.path.abspath(args.model),
            "speaker": speaker,
            "k": args.k,
            "steps": steps,
            "adaptation": asr.adaptation.describe(),
            "unsupervised_adaptation": (asr.unsupervised_adaptation.describe()),
            "support_seconds": support_seconds,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
        },
    )
    print(table)
    return rows


if __name__ == "__main__":
    main()
