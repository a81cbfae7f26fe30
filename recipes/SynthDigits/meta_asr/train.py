#!/usr/bin/env python3
"""Meta-ASR on SynthDigits: adapt to unseen languages from k utterances.

One recipe for every method, selected by the hparams file
(``hparams/<method>.yaml`` holds what the method changes,
``hparams/models/common.yaml`` what all of them share):

* meta-initialisation, warm-started from the joint model: ``maml``,
  ``fomaml``, ``reptile``, ``anil``;
* meta-optimisation (learned update rules, with first-order MAML):
  ``metasgd``, ``layer_step_lr``, ``learned_update``;
* meta-transfer (task parameters on the frozen joint model):
  ``scale_shift``, ``lhuc``, ``meta_lora``, ``meta_adapter``;
* baselines: ``joint`` (multitask training on the pooled meta-train
  languages, a plain ``sb.Brain``, the same number of updates), ``scratch``
  (no training), ``lora`` and ``adapter`` (``speechbrain.nnet.adapters`` on
  the joint model), each fine-tuned on the k shots.

After training, the few-shot protocol (``speechbrain_meta.evaluation``)
adapts each method to k support utterances of every held-out language (and
held-out voice) with the method's own rule and the same budget, and writes
``few_shot/<set>/few_shot_results.{json,md}`` and ``few_shot_cer.png`` in
the output folder. Rerunning skips what is done.

To run::

    python train.py hparams/joint.yaml
    python train.py hparams/maml.yaml        # trains joint first if needed

Authors
 * speechbrain-meta developers 2026
"""

import os
import sys

import speechbrain as sb
from speechbrain.utils.logger import get_logger

from speechbrain_meta import meta_brain_class
from speechbrain_meta.asr import add_ctc_pipelines
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.layered_yaml import (
    layered_experiment,
    load_layered_hparams,
)
from speechbrain_meta.recipe import (
    WarmStartASR,
    evaluate_and_export,
    joint_overrides,
    load_joint_model,
    recover_selected,
    train_method,
)
from speechbrain_meta.task_params import insert_adapters

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the corpus's prepare script, shared by its recipes
from synth_digits_prepare import (  # noqa: E402
    few_shot_tasks,
    load_splits,
    prepare_corpora,
)

COMMON = os.path.join(HERE, "hparams", "models", "common.yaml")


def dataio_prepare(hparams, real_csv=None):
    """Datasets (every row checked up front: ``load_splits``), pipelines,
    label encoder.
    """
    datasets, skipped = load_splits(hparams, real_csv)
    tokenizer = add_ctc_pipelines(
        datasets,
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        hparams["blank_index"],
    )
    all_sets = list(datasets.values())
    sb.dataio.dataset.set_output_keys(
        all_sets, ["id", "sig", "wrd", "spk_id", "lang", "tokens"]
    )
    datasets.setdefault("real", None)
    return datasets, tokenizer, skipped


def make_brain(hparams, run_opts, tokenizer, **overrides):
    """The method's brain: the recipe's ASR behind its meta brain."""
    Brain = meta_brain_class(WarmStartASR, hparams["meta_brain_class"])
    brain = Brain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams={**hparams, **overrides},
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        meta_algorithm=hparams["meta_algorithm"],
        rule_opt_class=hparams.get("rule_opt_class"),
        meta_train_init=hparams.get("meta_train_init"),
    )
    brain.tokenizer = tokenizer
    return brain


def main(argv):
    """Prepare data, train the method, run the few-shot protocol.

    Arguments
    ---------
    argv : list of str
        ``[hparams_file, --overrides...]`` as on the command line.

    Returns
    -------
    dict
        Few-shot results per evaluation set.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    return run(hparams_file, run_opts, overrides)


def prepare_data(overrides=None):
    """The corpora of a run with these overrides (``prepare_corpora``).

    Arguments
    ---------
    overrides : dict or str, optional
        Hyperparameter overrides (the data folders, the corpus).

    Returns
    -------
    str or None
        The real-speech manifest.
    """
    joint = os.path.join(HERE, "hparams", "joint.yaml")
    hparams, _ = load_layered_hparams(joint, COMMON, overrides)
    return prepare_corpora(hparams)


def run(hparams_file, run_opts, overrides):
    """Runs one method (see ``main``).

    Arguments
    ---------
    hparams_file : str
        The method's hparams file (over ``hparams/models/common.yaml``).
    run_opts : dict
        SpeechBrain run options.
    overrides : str or dict
        Hyperparameter overrides.

    Returns
    -------
    dict
        Few-shot results per evaluation set.
    """
    init_process_group(run_opts)  # torchrun: join the process group
    hparams = layered_experiment(hparams_file, COMMON, overrides)
    real_csv = prepare_corpora(hparams)
    datasets, tokenizer, skipped = dataio_prepare(hparams, real_csv)

    if hparams["init_from_joint"]:
        joint_yaml = os.path.join(HERE, "hparams", hparams["joint_hparams"])
        shared = joint_overrides(
            overrides, hparams["joint_folder"], os.path.dirname(joint_yaml)
        )
        load_joint_model(hparams, lambda: run(joint_yaml, run_opts, shared))
    if hparams.get("adapters") is not None:
        # Task parameters / adapters go into the loaded model (names of the
        # pretrained weights change once they are wrapped).
        insert_adapters(
            hparams["modules"], hparams["adapted_modules"], hparams["adapters"]
        )
    logger.info(
        "%s: %s training, %d epochs, learning rate %g",
        hparams["method"],
        hparams["training"],
        hparams["number_of_epochs"],
        hparams["lr"],
    )
    train_method(
        lambda **kw: make_brain(hparams, run_opts, tokenizer, **kw),
        hparams,
        run_opts,
        datasets,
    )
    if hparams["training"] != "none":
        # Evaluate the checkpoint selected on meta-dev.
        recover_selected(hparams)
    # The method's own brain adapts: its rule, its trainable parameters.
    brain = make_brain(hparams, run_opts, tokenizer)
    tasks = few_shot_tasks(hparams, datasets)
    results = evaluate_and_export(
        hparams,
        brain,
        datasets,
        tokenizer,
        "SynthDigits/meta_asr",
        tasks,
        skipped,
    )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
