#!/usr/bin/env python3
"""k-shot speaker adaptation on LibriSpeech (Klejch et al., 2018 setting).

Tasks are speakers. The methods meta-train over the speakers of
``train-clean-100`` and adapt to each ``test-clean`` speaker from k of its
utterances; the ``dev-clean`` speakers (meta-dev) select checkpoints and
each method's adaptation settings. One recipe for every method, selected
by the hparams file (``hparams/<method>.yaml`` holds what the method
changes, ``hparams/models/common.yaml`` what all of them share):

* baselines: ``joint`` (a CTC model trained on the pooled speakers, then
  fine-tuned on the k utterances), ``lhuc`` and ``lora`` (LHUC amplitudes
  and ``speechbrain.nnet.adapters.LoRA`` on the frozen joint model,
  fine-tuned on the k utterances);
* meta-learners, warm-started from the joint model: ``fomaml``,
  ``reptile``, ``maml``, ``meta_lhuc`` (LHUC amplitudes meta-trained on the
  frozen joint model).

After training, the few-shot protocol (``speechbrain_meta.evaluation``)
adapts each method to k support utterances of every test speaker and
scores WER/CER on held-out utterances of that speaker; results in
``few_shot/test/few_shot_results.{json,md}``. The model for
``speechbrain_meta.inference.AdaptiveASR`` is exported to ``inference/``.

To run::

    python train.py hparams/joint.yaml --data_folder=/path/to/LibriSpeech
    python train.py hparams/fomaml.yaml --data_folder=/path/to/LibriSpeech

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
from speechbrain_meta.data.manifest import (
    check_disjoint_tasks,
    drop_long_utterances,
    load_manifest,
)
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.layered_yaml import layered_experiment
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
sys.path.insert(0, HERE)
from librispeech_prepare import (  # noqa: E402
    LABELS,
    prepare_librispeech,
    speakers_from_chapters,
)


def dataio_prepare(hparams):
    """Datasets (every row checked up front), pipelines, label encoder.

    Utterances longer than ``avoid_if_longer_than`` seconds are left out
    of meta-training (memory: an episode holds K + Q of them), longer than
    ``eval_avoid_if_longer_than`` (default: none) out of meta-dev and
    meta-test; both logged. Manifests in upstream's format (``spk_id`` =
    speaker-chapter) get speakers as tasks; a speaker in two roles stops
    the run. Bad rows are named with file and line and skipped and
    counted, or stop the run (``bad_input``); the dev and test transcripts
    are checked against LibriSpeech's characters, every utterance against
    its transcript's CTC length.
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
    for split in ("train", "dev", "test"):
        datasets[split], skipped[split] = load_manifest(
            hparams[f"{split}_csv"],
            labels=None if split == "train" else LABELS,
            **checks,
        )
        # Upstream's manifests name chapters in spk_id: tasks are speakers.
        speakers_from_chapters(datasets[split], hparams[f"{split}_csv"])
        logger.info(
            "%s: %d utterances, %d skipped",
            split,
            len(datasets[split]),
            len(skipped[split]),
        )
        cap = hparams[
            "avoid_if_longer_than" if split == "train" else (
                "eval_avoid_if_longer_than"
            )
        ]  # fmt: skip
        datasets[split], _ = drop_long_utterances(datasets[split], cap, split)
    check_disjoint_tasks(datasets, "spk_id")
    # LibriSpeech's alphabet: the same labels whatever subset is read.
    tokenizer = add_ctc_pipelines(
        datasets,
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        hparams["blank_index"],
        labels=LABELS,
    )
    tokenizer.expect_len(hparams["output_neurons"])
    sb.dataio.dataset.set_output_keys(
        list(datasets.values()), ["id", "sig", "wrd", "spk_id", "tokens"]
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


def run(hparams_file, run_opts, overrides):
    """Prepares LibriSpeech, trains the method, runs the few-shot protocol.

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
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "tr_splits": hparams["train_splits"],
            "dev_splits": hparams["dev_splits"],
            "te_splits": hparams["test_splits"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    datasets, tokenizer, skipped = dataio_prepare(hparams)

    if hparams["init_from_joint"]:
        joint_yaml = os.path.join(HERE, "hparams", hparams["joint_hparams"])
        shared = joint_overrides(
            overrides, hparams["joint_folder"], os.path.dirname(joint_yaml)
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
        # Evaluate the checkpoint selected on meta-dev.
        recover_selected(hparams)
    brain = make_brain(hparams, run_opts, tokenizer)
    results = evaluate_and_export(
        hparams,
        brain,
        datasets,
        tokenizer,
        "LibriSpeech/speaker_adaptation",
        skipped=skipped,
    )
    return results


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    run(hparams_file, run_opts, overrides)
