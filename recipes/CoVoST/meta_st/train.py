#!/usr/bin/env python3
"""Meta-learned speech translation on CoVoST 2 (X -> English).

Tasks are source languages: the methods meta-train over the meta-train
languages' (speech, English translation) pairs, select checkpoints and
adaptation settings on the meta-dev languages, and adapt to each meta-test
language from k of its utterances; BLEU, and the translation's WER and
CER, are scored on other utterances of it. The data are a Common Voice
release and CoVoST 2's translation files, read as they are on disk
(``common_voice_prepare.prepare_common_voice`` with ``translations``: the
Common Voice recipe's preparation, shared). The model is
``speechbrain_meta.translation.ST`` (attentional decoder over SentencePiece
units, multitask CTC on the source transcript), as in the SynthDigits ST
recipe. What the methods share is in ``hparams/models/st.yaml`` over the
Common Voice recipe's ``hparams/models/common.yaml``.

To run::

    python train.py hparams/joint.yaml --data_folder=/path/to/cv-corpus \
        --covost_folder=/path/to/covost_tsvs
    python train.py hparams/fomaml.yaml --data_folder=... --covost_folder=...

Authors
 * speechbrain-meta developers 2026
"""

import json
import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta.asr import add_ctc_pipelines
from speechbrain_meta.brains import meta_brain_class
from speechbrain_meta.data.manifest import (
    check_disjoint_tasks,
    drop_long_utterances,
    load_manifest,
)
from speechbrain_meta.data.tokenizer import corpus_tokenizer, tokenizer_file
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.hub import write_encoder_decoder
from speechbrain_meta.layered_yaml import layered_experiment, layered_values
from speechbrain_meta.recipe import (
    WarmStartST,
    evaluate_and_export,
    joint_overrides,
    load_joint_model,
    parse_overrides,
    recover_selected,
    train_method,
)
from speechbrain_meta.task_params import insert_adapters
from speechbrain_meta.translation import add_translation_pipeline

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
# The Common Voice recipe's budget, protocol and encoder, then this
# recipe's data and model.
COMMON = [
    os.path.join(
        HERE, "..", "..", "CommonVoice", "meta_asr", "hparams", "models",
        "common.yaml",
    ),
    os.path.join(HERE, "hparams", "models", "st.yaml"),
]  # fmt: skip
# The hparams the preparation reads, before the others are loaded.
PREPARE_KEYS = [
    "data_folder",
    "covost_folder",
    "target_language",
    "prepared_folder",
    "train_languages",
    "dev_languages",
    "test_languages",
    "max_utterances_per_language",
    "min_character_share",
    "prepare_seed",
    "skip_prep",
    "units_from_data",
    "characters",
]
sys.path.insert(0, HERE)
from common_voice_prepare import prepare_common_voice  # noqa: E402


def prepare(hparams_file, overrides):
    """Prepares the source languages (main process); the overrides with
    the source transcripts' units.

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
        ``units_from_data`` (they size the CTC branch).
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
            "max_utterances_per_language": data["max_utterances_per_language"],
            "allowed_characters": units,
            "min_character_share": data["min_character_share"],
            "seed": data["prepare_seed"],
            "skip_prep": data["skip_prep"],
            "translations": {
                "folder": data["covost_folder"],
                "target": data["target_language"],
            },
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


def translation_units(hparams):
    """The translation's SentencePiece model (trained once, main process).

    Arguments
    ---------
    hparams : dict
        Loaded hparams.

    Returns
    -------
    sentencepiece.SentencePieceProcessor
    """
    kwargs = {
        "folder": hparams["tokenizer_folder"],
        "annotation_train": hparams["train_csv"],
        "annotation_read": "translation",
        "vocab_size": hparams["vocab_size"],
        "model_type": hparams["token_type"],
    }
    run_on_main(corpus_tokenizer, kwargs=kwargs)
    return corpus_tokenizer(**kwargs)


def dataio_prepare(hparams, tokenizer):
    """Datasets (every row checked up front), pipelines, label encoder.

    As the Common Voice recipe's (bad rows named and skipped or stopping
    the run, long utterances left out of training, a speaker in two roles
    stops it), with the translation's pipeline added.

    Arguments
    ---------
    hparams : dict
        Loaded hparams.
    tokenizer : sentencepiece.SentencePieceProcessor
        The translation's units.

    Returns
    -------
    tuple
        ``(datasets, tokenizer, skipped)``.
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
    source_encoder = add_ctc_pipelines(
        datasets,
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        hparams["blank_index"],
        labels=hparams["characters"],
    )
    source_encoder.expect_len(hparams["output_neurons"])
    add_translation_pipeline(
        datasets,
        tokenizer,
        hparams["bos_index"],
        hparams["eos_index"],
        output_neurons=hparams["translation_neurons"],
    )
    sb.dataio.dataset.set_output_keys(
        list(datasets.values()),
        ["id", "sig", "wrd", "translation", "spk_id", "lang", "tokens",
         "translation_bos", "translation_eos"],
    )  # fmt: skip
    return datasets, tokenizer, skipped


def make_brain(hparams, run_opts, tokenizer, **overrides):
    """The method's brain: the ST Brain behind the method's meta brain.

    Arguments
    ---------
    hparams : dict
        The run's hparams.
    run_opts : dict
        SpeechBrain run options.
    tokenizer : sentencepiece.SentencePieceProcessor
        The translation's units.
    **overrides : dict
        Hparams this brain sees changed (``train_method`` passes some).

    Returns
    -------
    MetaBrain
    """
    Brain = meta_brain_class(WarmStartST, hparams["meta_brain_class"])
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


def run(hparams_file, run_opts, overrides):
    """Prepares the data, trains the method, runs the few-shot protocol.

    Arguments
    ---------
    hparams_file : str
        The method's hparams file.
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
    datasets, tokenizer, skipped = dataio_prepare(
        hparams, translation_units(hparams)
    )
    joint_yaml = os.path.join(HERE, "hparams", hparams["joint_hparams"])
    if hparams["init_from_joint"]:
        shared = joint_overrides(
            overrides,
            hparams["joint_folder"],
            os.path.dirname(joint_yaml),
            task_keys=("max_utterances_per_language",),
        )
        load_joint_model(hparams, lambda: run(joint_yaml, run_opts, shared))
    if hparams.get("adapters") is not None:
        # Task parameters / adapters go into the loaded model.
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
        recover_selected(hparams)  # the checkpoint selected on meta-dev
    brain = make_brain(hparams, run_opts, tokenizer)
    results = evaluate_and_export(
        hparams,
        brain,
        datasets,
        tokenizer,
        "CoVoST/meta_st",
        skipped=skipped,
        export=False,
    )
    if hparams.get("adapters") is None:
        # The model as SpeechBrain's EncoderDecoderASR (and AdaptiveASR)
        # load it: a translation is what it transcribes.
        run_on_main(
            write_encoder_decoder,
            args=[
                hparams["output_folder"],
                brain.modules,
                tokenizer_file(
                    hparams["tokenizer_folder"],
                    hparams["vocab_size"],
                    hparams["token_type"],
                ),
                os.path.join(hparams["output_folder"], "hub"),
            ],
        )
    return results


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    run(hparams_file, run_opts, overrides)
