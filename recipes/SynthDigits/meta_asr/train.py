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
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta import meta_brain_class
from speechbrain_meta.asr import add_ctc_pipelines
from speechbrain_meta.data.asterisk import prepare_asterisk_digits
from speechbrain_meta.data.manifest import load_manifest
from speechbrain_meta.data.rooms import prepare_simulated_rirs
from speechbrain_meta.data.tasks import task_values
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
COMMON = os.path.join(HERE, "hparams", "models", "common.yaml")


def dataio_prepare(hparams, real_csv=None):
    """Datasets (every row checked up front), pipelines, label encoder.

    Bad rows are named with file and line and skipped and counted, or stop
    the run (``bad_input``); the evaluation sets' transcripts are checked
    against the training set's characters (the label set), and every
    utterance against its transcript's CTC length. ``real`` (the recorded
    voices) is None when it could not be prepared.
    """
    checks = {
        "bad_input": hparams["bad_input"],
        "audio_checks": hparams["audio_checks"],
        # A CTC path needs a frame per label: hop x time pooling.
        "samples_per_frame": hparams["sample_rate"]
        * hparams["hop_length"]
        / 1000
        * hparams["time_pooling_size"],
    }
    datasets, skipped = {}, {}
    datasets["train"], skipped["train"] = load_manifest(
        hparams["train_csv"],
        replacements={"data_root": hparams["data_folder"]},
        **checks,
    )
    labels = {c for row in datasets["train"].data.values() for c in row["wrd"]}
    for split in ("dev", "test", "test_voices"):
        datasets[split], skipped[split] = load_manifest(
            hparams[f"{split}_csv"],
            replacements={"data_root": hparams["data_folder"]},
            labels=labels,
            **checks,
        )
    if real_csv is not None:
        datasets["real"], skipped["real"] = load_manifest(
            real_csv,
            replacements={"data_root": hparams["real_folder"]},
            labels=labels,
            **checks,
        )
    for split, bad in skipped.items():
        logger.info(
            "%s: %d utterances, %d skipped",
            split,
            len(datasets[split]),
            len(bad),
        )

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


def prepare_corpora(hparams):
    """Synthesises SynthDigits, the simulated room responses of the
    augmentation and the real-speech set, unless done.

    Arguments
    ---------
    hparams : dict
        Loaded hparams (``data_folder``, ``corpus``, ``rir_folder``,
        ``rirs``, ``real_folder``, ``real_speech``, ``few_shot_sets``).

    Returns
    -------
    str or None
        The real-speech manifest, or None where it cannot be built.
    """
    sys.path.insert(0, HERE)
    from synth_digits_prepare import prepare_synth_digits

    run_on_main(
        prepare_synth_digits,
        kwargs={"save_folder": hparams["data_folder"], **hparams["corpus"]},
    )
    if hparams.get("rirs") is not None:
        run_on_main(
            prepare_simulated_rirs,
            kwargs={"save_folder": hparams["rir_folder"], **hparams["rirs"]},
        )
    if "real" not in (hparams["few_shot_sets"] or {}):
        return None
    kwargs = {"save_folder": hparams["real_folder"], **hparams["real_speech"]}
    run_on_main(prepare_asterisk_digits, kwargs=kwargs)
    return prepare_asterisk_digits(**kwargs)


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
    # Held-out voices: the first few speakers.
    voices = task_values(datasets["test_voices"], "spk_id")
    tasks = {
        "test_voices": sorted({str(v) for v in voices})[
            : hparams["few_shot_voice_tasks"]
        ]
    }
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
