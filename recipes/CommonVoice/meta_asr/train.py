#!/usr/bin/env python3
"""Multilingual meta-ASR on Common Voice (the MetaASR setting, Hsu et al.).

Tasks are languages (``hparams/<method>.yaml``) or, in the accent variant
(``hparams/accent_<method>.yaml``, Winata et al. 2020), the accents of
one language. The methods meta-train over the source languages (accents),
select checkpoints and adaptation settings on the meta-dev ones, and adapt
to each target language (accent) from k of its utterances; CER and WER are
scored on other utterances of the target. The units are characters shared
across languages (``characters``: a Latin alphabet with the diacritics of
the default languages); a target's characters have output units from the
start, trained only by adaptation. One recipe for every method
(``hparams/models/common.yaml`` holds what they share):

* ``joint``: multilingual joint training on the pooled source languages,
  then fine-tuning on the k utterances;
* ``fomaml``, ``reptile``, ``maml``, ``metasgd``: meta-learned
  initialisation (and rates), warm-started from the joint model.

To run::

    python train.py hparams/joint.yaml --data_folder=/path/to/cv-corpus
    python train.py hparams/fomaml.yaml --data_folder=/path/to/cv-corpus

Authors
 * speechbrain-meta developers 2026
"""

import json
import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta import meta_brain_class
from speechbrain_meta.asr import add_ctc_pipelines
from speechbrain_meta.data.manifest import (
    check_disjoint_tasks,
    drop_long_utterances,
    load_manifest,
)
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.layered_yaml import layered_experiment, layered_values
from speechbrain_meta.recipe import (
    WarmStartASR,
    evaluate_and_export,
    joint_overrides,
    load_joint_model,
    parse_overrides,
    recover_selected,
    train_method,
)
from speechbrain_meta.task_params import insert_adapters

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = os.path.join(HERE, "hparams", "models", "common.yaml")
# The hparams the preparation reads, before the others are loaded.
PREPARE_KEYS = [
    "data_folder",
    "prepared_folder",
    "train_languages",
    "dev_languages",
    "test_languages",
    "accents",
    "max_utterances_per_language",
    "min_character_share",
    "prepare_seed",
    "skip_prep",
    "units_from_data",
    "characters",
]
sys.path.insert(0, HERE)
from common_voice_prepare import prepare_common_voice  # noqa: E402


def dataio_prepare(hparams):
    """Datasets (every row checked up front), pipelines, label encoder.

    The label encoder holds the recipe's ``characters`` (the same units
    whatever languages are read). Utterances longer than
    ``avoid_if_longer_than`` seconds are left out of training (logged). A
    speaker in two roles stops the run. Bad rows are named with file and
    line and skipped and counted, or stop the run (``bad_input``); every
    utterance is checked against its transcript's CTC length.
    """
    checks = {
        "bad_input": hparams["bad_input"],
        "audio_checks": hparams["audio_checks"],
        "labels": set(hparams["characters"]),
        # A CTC path needs a frame per label: hop x time pooling.
        "samples_per_frame": hparams["sample_rate"]
        * hparams["hop_length"]
        / 1000
        * hparams["time_pooling_size"],
    }
    datasets, skipped = {}, {}
    for split in ("train", "dev", "test"):
        datasets[split], skipped[split] = load_manifest(
            hparams[f"{split}_csv"], **checks
        )
        logger.info(
            "%s: %d utterances, %d skipped",
            split,
            len(datasets[split]),
            len(skipped[split]),
        )
    datasets["train"], _ = drop_long_utterances(
        datasets["train"], hparams["avoid_if_longer_than"], "train"
    )
    check_disjoint_tasks(datasets, "spk_id")
    tokenizer = add_ctc_pipelines(
        datasets,
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        hparams["blank_index"],
        labels=hparams["characters"],
    )
    tokenizer.expect_len(hparams["output_neurons"])
    sb.dataio.dataset.set_output_keys(
        list(datasets.values()),
        ["id", "sig", "wrd", "spk_id", "lang", "accent", "tokens"],
    )
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


def prepare(hparams_file, overrides):
    """Prepares Common Voice (main process); the overrides with its units.

    The preparation runs before the hparams are loaded, since with
    ``units_from_data`` the characters it counts (``data_units`` of
    ``common_voice_prepare``) size the model's output layer.

    Arguments
    ---------
    hparams_file : str
        The method's hparams file.
    overrides : str or dict
        Hyperparameter overrides.

    Returns
    -------
    dict
        The overrides, with ``characters`` set to the prepared units when
        ``units_from_data``.
    """
    data = layered_values(hparams_file, COMMON, PREPARE_KEYS, overrides)
    units = None if data["units_from_data"] else data["characters"]
    run_on_main(
        prepare_common_voice,
        kwargs={
            "data_folder": data["data_folder"],
            "save_folder": data["prepared_folder"],
            "train_languages": data["train_languages"],
            "dev_languages": data["dev_languages"],
            "test_languages": data["test_languages"],
            "accents": data["accents"],
            "max_utterances_per_language": data["max_utterances_per_language"],
            "allowed_characters": units,
            "min_character_share": data["min_character_share"],
            "seed": data["prepare_seed"],
            "skip_prep": data["skip_prep"],
        },
    )
    overrides = parse_overrides(overrides)
    summary = os.path.join(data["prepared_folder"], "prepare_summary.json")
    if data["units_from_data"] and os.path.isfile(summary):
        with open(summary, encoding="utf-8") as f:
            overrides["characters"] = json.load(f)["units"]
    elif data["units_from_data"]:  # skip_prep, prepared elsewhere
        logger.warning("No %s: units from `characters`", summary)
    return overrides


def run(hparams_file, run_opts, overrides):
    """Prepares Common Voice, trains the method, runs the few-shot protocol.

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
    overrides = prepare(hparams_file, overrides)
    hparams = layered_experiment(hparams_file, COMMON, overrides)
    datasets, tokenizer, skipped = dataio_prepare(hparams)

    if hparams["init_from_joint"]:
        joint_yaml = os.path.join(HERE, "hparams", hparams["joint_hparams"])
        # The variant's task definition goes to its joint model too.
        shared = joint_overrides(
            overrides,
            hparams["joint_folder"],
            os.path.dirname(joint_yaml),
            task_keys=("accents", "group_by", "max_utterances_per_language"),
        )
        load_joint_model(hparams, lambda: run(joint_yaml, run_opts, shared))
    if hparams.get("adapters") is not None:
        # Task parameters / adapters go into the loaded model.
        insert_adapters(
            hparams["modules"], hparams["adapted_modules"], hparams["adapters"]
        )
    logger.info(
        "%s: %s training, %d epochs, learning rate %g, tasks by %s",
        hparams["method"],
        hparams["training"],
        hparams["number_of_epochs"],
        hparams["lr"],
        hparams["group_by"],
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
    brain = make_brain(hparams, run_opts, tokenizer)
    results = evaluate_and_export(
        hparams,
        brain,
        datasets,
        tokenizer,
        "CommonVoice/meta_asr",
        skipped=skipped,
    )
    return results


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    run(hparams_file, run_opts, overrides)
