#!/usr/bin/env python3
"""Meta-transfer on a frozen SpeechBrain pretrained model, per speaker.

Takes a pretrained model in SpeechBrain's hub format (by default the main
job's ``joint`` model of one seed, written as an ``EncoderASR`` folder by
``speechbrain_meta.hub.write_encoder_asr``), inserts task parameters into
it (LHUC by default), meta-trains their starting point on episodes of one
speaker each from the meta-train languages with the backbone frozen,
keeping the epoch of lowest CER on the meta-dev languages' speakers
(``speechbrain_meta.hub_transfer.meta_transfer_hub``, settings in the
package's ``hparams/hub_meta_transfer.yaml``), and writes a folder that
``AdaptiveASR`` adapts per speaker. Then it scores, under the main job's
few-shot protocol (the same episodes of unseen languages, unseen voices and
real voices, through ``AdaptiveASR.adapt`` and ``transcribe`` as a user
would), three ways of adapting the same pretrained model:

* ``hub_all``: every weight, ``HUB_ADAPTATION``;
* ``hub_<kind>``: the task parameters inserted but not meta-trained,
  ``TASK_PARAMS_ADAPTATION``;
* ``meta_<kind>``: the meta-transferred folder, its own adaptation.

Usage::

    python hub_meta_transfer.py \
        --benchmark_folder results/SynthDigits/benchmark --seed 1234 \
        --output_folder DIR [--hub_folder FOLDER] \
        [--set task_params='{kind: lora}' ...]

Writes ``DIR/meta_transfer/inference`` (the adaptable folder),
``DIR/<set>/few_shot_results.{json,md}`` and prints the tables.

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exported_models import main_job_protocols  # noqa: E402


def parse_args(argv=None):
    """The command line (see the module docstring).

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark_folder", required=True)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument(
        "--hub_folder",
        default=None,
        help="a pretrained EncoderASR/EncoderDecoderASR folder (default: "
        "the benchmark's joint model of --seed, written as one)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=YAML",
        help="a meta-transfer setting over hparams/hub_meta_transfer.yaml "
        "(task_params, inner_lr, number_of_epochs...)",
    )
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv=None):
    """Meta-transfers, then scores the three adaptations on every set."""
    args = parse_args(argv)

    from speechbrain_meta.evaluation import write_results
    from speechbrain_meta.hub import write_encoder_asr
    from speechbrain_meta.hub_transfer import meta_transfer_hub
    from speechbrain_meta.inference import AdaptiveASR

    data = os.path.join(args.benchmark_folder, "data")
    hub = args.hub_folder or write_encoder_asr(
        os.path.join(
            args.benchmark_folder, f"seed{args.seed}", "joint", "inference"
        ),
        os.path.join(args.output_folder, "hub_model"),
    )
    overrides = {"seed": args.seed}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    run_opts = {"device": args.device}
    transferred = meta_transfer_hub(
        hub,
        os.path.join(data, "train.csv"),
        os.path.join(data, "dev.csv"),
        os.path.join(args.output_folder, "meta_transfer"),
        overrides=overrides,
        run_opts=run_opts,
    )
    with open(os.path.join(transferred, "meta_transfer.yaml")) as fin:
        kind = yaml.safe_load(fin)["task_params"]["kind"]

    def load(source, name, **kwargs):
        return AdaptiveASR.from_hparams(
            source=source,
            savedir=os.path.join(args.output_folder, "savedir", name),
            run_opts=run_opts,
            **kwargs,
        )

    models = {
        "hub_all": load(hub, "hub_all"),
        f"hub_{kind}": load(hub, f"hub_{kind}", task_params=kind),
        f"meta_{kind}": load(transferred, f"meta_{kind}"),
    }
    protocols = main_job_protocols(
        args.benchmark_folder, args.seed, args.output_folder
    )
    for split, protocol in protocols.items():
        rows = []
        for name, asr in models.items():
            for row in protocol.evaluate_interface(asr, name):
                row.update(budget="hub", seeds=[args.seed])
                rows.append(row)
        write_results(
            os.path.join(args.output_folder, split),
            protocol.description(),
            rows,
            title=f"SynthDigits {split}: joint (seed {args.seed}) as a "
            f"SpeechBrain EncoderASR: all weights, {kind} inserted, {kind} "
            "meta-transferred (frozen backbone)",
            adaptations={
                name: asr.adaptation.describe() for name, asr in models.items()
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
