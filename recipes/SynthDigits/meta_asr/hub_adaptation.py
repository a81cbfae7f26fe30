#!/usr/bin/env python3
"""A trained joint model as a plain SpeechBrain model, adapted the hub way.

Writes the main job's ``joint`` model of one seed as a SpeechBrain
``EncoderASR`` hub folder (``speechbrain_meta.hub.write_encoder_asr``:
nothing of the meta-learning kept), loads that folder with ``AdaptiveASR``
as a user would load any SpeechBrain CTC model, and scores its adaptation
(``HUB_ADAPTATION``, or the settings given) under the main job's few-shot
protocol: the same episodes of unseen languages, unseen voices and real
voices, through ``AdaptiveASR.adapt`` and ``transcribe`` (the protocol's
``evaluate_interface``). The main job's own rows of the same model (its
``default`` adaptation, chosen on meta-dev) are the comparison.

``--hub_folder F`` scores the hub folder F instead (any ``EncoderASR`` or
``EncoderDecoderASR`` folder over the corpus's characters: the attention
recipes write one per trained model, ``<output_folder>/hub``), on the same
episodes.

Usage::

    python hub_adaptation.py --benchmark_folder results/SynthDigits/benchmark \
        --seed 1234 --output_folder DIR [--hub_folder F] [--set lr=0.001 ...]

Writes ``DIR/<set>/few_shot_results.{json,md}`` and prints the tables.

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exported_models import main_job_protocols  # noqa: E402


def main(argv=None):
    """Writes the hub folder, adapts it on every set, writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark_folder", required=True)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument(
        "--hub_folder",
        default=None,
        help="a hub folder to score (default: the seed's joint model, "
        "written as an EncoderASR)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=YAML",
        help="an adaptation setting over HUB_ADAPTATION (rule, lr, steps...)",
    )
    args = parser.parse_args(argv)

    from speechbrain_meta.evaluation import write_results
    from speechbrain_meta.hub import write_encoder_asr
    from speechbrain_meta.inference import HUB_ADAPTATION, AdaptiveASR

    seed_folder = os.path.join(args.benchmark_folder, f"seed{args.seed}")
    hub, name = args.hub_folder, f"{args.hub_folder} (seed {args.seed} sets)"
    if hub is None:
        hub = write_encoder_asr(
            os.path.join(seed_folder, "joint", "inference"),
            os.path.join(args.output_folder, "hub_model"),
        )
        name = f"joint (seed {args.seed}) as a SpeechBrain EncoderASR"
    adaptation = dict(HUB_ADAPTATION)
    for item in args.set:
        key, _, value = item.partition("=")
        adaptation[key.strip()] = yaml.safe_load(value)
    asr = AdaptiveASR.from_hparams(
        source=hub,
        savedir=os.path.join(args.output_folder, "savedir"),
        adaptation=adaptation,
        run_opts={"device": "cpu"},
    )
    protocols = main_job_protocols(
        args.benchmark_folder, args.seed, args.output_folder
    )
    method = "joint as EncoderASR" if args.hub_folder is None else "hub"
    for split, protocol in protocols.items():
        rows = protocol.evaluate_interface(asr, method)
        for row in rows:
            row.update(budget="hub", seeds=[args.seed])
        write_results(
            os.path.join(args.output_folder, split),
            protocol.description(),
            rows,
            title=f"SynthDigits {split}: {name}, HUB_ADAPTATION",
            adaptations={"hub": asr.adaptation.describe()},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
