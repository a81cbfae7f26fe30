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
``AdaptiveASR`` adapts per speaker. The inner loop (what meta-training
prepares the task parameters for, and what they are adapted with) is
chosen among ``--inner_loops`` on the same meta-dev speakers
(``search_inner_loop``: lowest CER after each candidate's own adaptation;
table in ``DIR/meta_transfer/inner_loop_search.md``). Then it scores,
under the main job's few-shot protocol (the same episodes of unseen
languages, unseen voices and real voices, through ``AdaptiveASR.adapt``
and ``transcribe`` as a user would), three ways of adapting the same
pretrained model:

* ``hub_all``: every weight, ``HUB_ADAPTATION``;
* ``hub_<kind>``: the task parameters inserted but not meta-trained,
  ``TASK_PARAMS_ADAPTATION``;
* ``meta_<kind>``: the meta-transferred folder, its own adaptation.

Usage::

    python hub_meta_transfer.py \
        --benchmark_folder results/SynthDigits/benchmark --seed 1234 \
        --output_folder DIR [--hub_folder FOLDER] \
        [--set task_params='{kind: lora}' ...] \
        [--inner_loops '[{inner_steps: 3, inner_lr: 0.1}]']

Writes ``DIR/meta_transfer/<inner loop>/inference`` (the adaptable
folders),
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

# The inner loops tried (settings of hparams/hub_meta_transfer.yaml): the
# package's default (3 SGD steps at 0.1, the main job's `lhuc` inner loop)
# and two that move LHUC amplitudes further with the 5-10 utterances a
# speaker gives (10 steps at 0.3 and at 1.0); chosen on meta-dev.
INNER_LOOPS = [
    {"inner_steps": 3, "inner_lr": 0.1},
    {"inner_steps": 10, "inner_lr": 0.3},
    {"inner_steps": 10, "inner_lr": 1.0},
]


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
    parser.add_argument(
        "--inner_loops",
        type=yaml.safe_load,
        default=INNER_LOOPS,
        help="the inner loops to choose from on meta-dev, a YAML list of "
        "settings (default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv=None):
    """Meta-transfers, then scores the three adaptations on every set."""
    args = parse_args(argv)

    from speechbrain_meta.evaluation import write_results
    from speechbrain_meta.hub import write_encoder_asr
    from speechbrain_meta.hub_transfer import search_inner_loop
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
    transferred, _ = search_inner_loop(
        hub,
        os.path.join(data, "train.csv"),
        os.path.join(data, "dev.csv"),
        os.path.join(args.output_folder, "meta_transfer"),
        args.inner_loops,
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
