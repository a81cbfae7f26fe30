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

import glob
import os
import sys

import speechbrain as sb
import torch
import yaml
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta import meta_brain_class
from speechbrain_meta.asr import CTCASR, add_ctc_pipelines
from speechbrain_meta.data.asterisk import prepare_asterisk_digits
from speechbrain_meta.data.manifest import load_manifest
from speechbrain_meta.data.tasks import task_values
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.evaluation import (
    FewShotProtocol,
    cached_results,
    candidate_adaptations,
    select_adaptation,
    write_results,
)
from speechbrain_meta.inference import export_run
from speechbrain_meta.interpret import learned_rates, write_rate_report
from speechbrain_meta.layered_yaml import (
    layer_keys,
    layered_experiment,
    load_layered_hparams,
)
from speechbrain_meta.task_params import insert_adapters

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = os.path.join(HERE, "hparams", "models", "common.yaml")


class ASR(CTCASR):
    """The plain CTC recogniser; the joint model marks its warm start."""

    def checkpoint_meta(self, stats, epoch):
        """Validation checkpoint meta: the meta-learners' starting point.

        Arguments
        ---------
        stats : dict
            Validation statistics.
        epoch : int
            The epoch.

        Returns
        -------
        dict
        """
        meta = super().checkpoint_meta(stats, epoch)
        warm_start = getattr(self.hparams, "warm_start_epoch", None)
        if self.hparams.training == "joint" and epoch == warm_start:
            # The meta-learners' starting point: kept for good.
            meta.update(warm_start=True, keep=True)
        return meta


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


def load_joint_model(hparams, run_opts, overrides):
    """Loads the joint model of ``warm_start_epoch`` into the modules.

    Trains it first (``joint_hparams`` with the same overrides) if its
    output folder has no checkpoint yet. Loading goes through SpeechBrain's
    ``Pretrainer`` from the local checkpoint.
    """
    joint_save = os.path.join(hparams["joint_folder"], "save")
    checkpointer = sb.utils.checkpoints.Checkpointer(joint_save)
    if hparams["training"] == "meta":
        # Same total number of updates as joint training.
        def wanted(c):
            return bool(c.meta.get("warm_start"))
    else:
        # Baselines built on the joint model take its selected checkpoint.
        def wanted(c):
            return True

    def find():
        return checkpointer.find_checkpoint(
            min_key="CER", ckpt_predicate=wanted
        )

    if find() is None:
        logger.info("No joint model in %s: training it first", joint_save)
        joint_yaml = os.path.join(HERE, "hparams", hparams["joint_hparams"])
        run(
            joint_yaml,
            run_opts,
            _joint_overrides(overrides, hparams["joint_folder"]),
        )
        # The joint run sent the log to its own folder: back to this one.
        sb.utils.logger.setup_logging(
            sb.core.DEFAULT_LOG_CONFIG,
            {
                "handlers": {
                    "file_handler": {
                        "filename": os.path.join(
                            hparams["output_folder"], "log.txt"
                        )
                    }
                }
            },
        )
        logger.info("Back from training the joint model")
    ckpt = find()
    if ckpt is None:
        raise RuntimeError(f"No joint-model checkpoint in {joint_save}")
    pretrainer = sb.utils.parameter_transfer.Pretrainer(
        collect_in=os.path.join(hparams["save_folder"], "joint_init"),
        loadables={k: hparams["modules"][k] for k in hparams["modules"]},
        paths={k: str(ckpt.paramfiles[k]) for k in hparams["modules"]},
    )
    pretrainer.collect_files()
    pretrainer.load_collected()
    logger.info("Initialised from the joint model %s", ckpt.path)
    return ckpt


# Method settings no method file changes (common.yaml's defaults), and the
# run's own folders: not handed on to the joint model's run either.
RUN_KEYS = {
    "output_folder", "save_folder", "train_log", "run_few_shot",
    "opt_class", "meta_algorithm", "meta_brain_class",
}  # fmt: skip


def _joint_overrides(overrides, joint_folder):
    """The overrides of this run that the joint model's run shares.

    A key some method file sets (``lr``, ``inner_lr``, ``meta``...) is the
    method's own setting, not handed on.
    """
    if isinstance(overrides, dict):
        parsed = dict(overrides)
    else:
        parsed = yaml.safe_load(overrides or "") or {}
    method_files = sorted(glob.glob(os.path.join(HERE, "hparams", "*.yaml")))
    method_keys = RUN_KEYS.union(*(layer_keys(f) for f in method_files))
    shared = {k: v for k, v in parsed.items() if k not in method_keys}
    shared.update(output_folder=joint_folder, run_few_shot=False)
    return shared


def fit_input_normalization(hparams, run_opts, dataset, batches=20):
    """Global feature statistics for an untrained model (``scratch``).

    Training never happens for this model, but its ``InputNormalization``
    needs the statistics any trained model would have: one pass over
    ``batches`` meta-train batches, nothing else is updated.
    """
    device = run_opts.get("device", "cpu")
    normalize = hparams["modules"]["normalize"].to(device)
    loader = sb.dataio.dataloader.make_dataloader(
        dataset, batch_size=hparams["joint_batch_size"], shuffle=False
    )
    normalize.train()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i == batches:
                break
            wavs, wav_lens = batch.sig
            feats = hparams["compute_features"](wavs.to(device))
            normalize(feats, wav_lens.to(device))
    normalize.eval()


def _brain(hparams, run_opts, tokenizer, **overrides):
    """The method's brain: the recipe's ASR behind its meta brain."""
    Brain = meta_brain_class(ASR, hparams["meta_brain_class"])
    brain = Brain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams={**hparams, **overrides},
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.tokenizer = tokenizer
    return brain


def train(hparams, run_opts, datasets, tokenizer):
    """Trains the model as the method says (meta, joint or not at all).

    Every trained model is selected on the same criterion: CER on meta-dev
    episodes after adapting with its own rule (``eval_inner_steps`` steps).
    """
    training = hparams["training"]
    if training == "none":
        if not hparams["init_from_joint"]:
            fit_input_normalization(hparams, run_opts, datasets["train"])
        return None
    if training == "joint":
        # Multitask training on pooled batches (plain batches train as in
        # sb.Brain): the same number of updates and utterances per update
        # as meta-training.
        brain = _brain(hparams, run_opts, tokenizer, grad_accumulation_factor=1)
        updates_per_epoch = (
            hparams["episodes_per_epoch"] // hparams["grad_accumulation_factor"]
        )
        batch_size = hparams["joint_batch_size"]
        sampler = sb.dataio.sampler.ReproducibleRandomSampler(
            datasets["train"],
            seed=hparams["seed"],
            replacement=False,
            num_samples=updates_per_epoch * batch_size,
        )
        train_kwargs = {
            "batch_size": batch_size,
            "sampler": sampler,
            "drop_last": True,
        }
    elif training == "meta":
        brain = _brain(hparams, run_opts, tokenizer)
        train_kwargs = hparams["train_dataloader_opts"]
    else:
        raise ValueError(f"Unknown training {training!r}: meta|joint|none")
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["dev"],
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    return brain


def choose_adaptations(hparams, brain, dev_data):
    """The method's adaptations, chosen on the meta-dev languages.

    ``tuned`` (the best settings), ``quick`` (the best at a small fixed
    budget) and ``safe`` (the tuned ones, with safe adaptation). The search
    is cached in the output folder.
    """
    search = hparams["adaptation_search"]
    dev = FewShotProtocol(
        dev_data,
        group_by=hparams["group_by"],
        k_shots=search["k_shots"],
        episodes_per_task=search["episodes_per_task"],
        query_utterances=search["query_utterances"],
        seed=hparams["few_shot"]["seed"],
        dataset_name="SynthDigits/dev",
    )
    chosen = select_adaptation(
        brain,
        dev,
        candidate_adaptations(
            search["rules"],
            search["sgd_lrs"],
            search["adam_lrs"],
            search["modes"],
        ),
        steps=search["steps"],
        quick_steps=search["quick_steps"],
        cache_path=os.path.join(
            hparams["output_folder"], "adaptation_search.json"
        ),
    )
    if brain.learns_update_rule():
        report_learned_rates(brain, hparams, dev)
    return {
        "tuned": chosen["tuned"],
        "quick": chosen["quick"],
        "safe": chosen["tuned"].replace(holdout=hparams["safe_holdout"]),
    }


def few_shot_evaluation(hparams, brain, datasets, adaptations):
    """Runs the few-shot protocol on every evaluation set, unless done.

    The method adapts with each of its ``adaptations`` (see
    ``choose_adaptations``).
    """
    wanted = {name: a.describe() for name, a in adaptations.items()}
    results = {}
    for split, group_by in (hparams["few_shot_sets"] or {}).items():
        if datasets.get(split) is None:
            logger.warning("Few-shot set %s not available: skipped", split)
            continue
        tasks = None
        if split == "test_voices":
            voices = {str(v) for v in task_values(datasets[split], group_by)}
            tasks = sorted(voices)[: hparams["few_shot_voice_tasks"]]
        protocol = FewShotProtocol(
            datasets[split],
            group_by=group_by,
            tasks=tasks,
            dataset_name=f"SynthDigits/{split}",
            **hparams["few_shot"],
        )
        out_dir = os.path.join(hparams["output_folder"], "few_shot", split)
        description = protocol.description()
        done = cached_results(out_dir, description)
        if done is not None and done.get("adaptations") == wanted:
            logger.info("Few-shot results already in %s", out_dir)
            results[split] = done
            continue
        rows = []
        for budget, adaptation in adaptations.items():
            for row in protocol.evaluate(brain, hparams["method"], adaptation):
                row.update(budget=budget, seeds=[hparams["seed"]])
                rows.append(row)
        results[split] = write_results(
            out_dir,
            description,
            rows,
            title=f"SynthDigits {split}: {hparams['method']}",
            adaptations=wanted,
        )
    return results


def report_learned_rates(brain, hparams, protocol):
    """Writes the learned rule's rates per tensor and step (meta-dev)."""
    k = hparams["n_support"]
    task = protocol.tasks[0]
    support = protocol.batch(protocol.episode(task, 0, k)[0], brain.device)
    rows = learned_rates(brain, support, hparams["eval_inner_steps"])
    paths = write_rate_report(
        rows,
        hparams["output_folder"],
        title=f"SynthDigits {hparams['method']}: learned inner rates "
        f"(meta-dev task {task})",
    )
    logger.info("Learned rates written to %s", paths["md"])
    return rows


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
    """Synthesises SynthDigits and builds the real-speech set, unless done.

    Arguments
    ---------
    hparams : dict
        Loaded hparams (``data_folder``, ``corpus``, ``real_folder``,
        ``real_speech``, ``few_shot_sets``).

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
        load_joint_model(hparams, run_opts, overrides)
    if hparams.get("adapters") is not None:
        # Task parameters / adapters go into the loaded model (names of the
        # pretrained weights change once they are wrapped).
        insert_adapters(
            hparams["modules"], hparams["adapted_modules"], hparams["adapters"]
        )
    train(hparams, run_opts, datasets, tokenizer)
    if hparams["training"] != "none":
        # Evaluate the checkpoint selected on meta-dev.
        hparams["checkpointer"].recover_if_possible(min_key="CER")
    # The method's own brain adapts: its rule, its trainable parameters.
    brain = _brain(hparams, run_opts, tokenizer)
    results = {}
    if hparams["run_few_shot"]:
        adaptations = choose_adaptations(hparams, brain, datasets["dev"])
        results = few_shot_evaluation(hparams, brain, datasets, adaptations)
        exported = adaptations["safe"]
    else:
        exported = brain.own_adaptation().replace(
            holdout=hparams["safe_holdout"]
        )
    if if_main_process():
        # The model for AdaptiveASR, adapting the way it was evaluated.
        export_run(
            hparams["output_folder"],
            brain,
            tokenizer,
            exported,
            info={
                "method": hparams["method"],
                "recipe": "SynthDigits/meta_asr",
            },
        )
    if any(skipped.values()):
        logger.warning(
            "Manifest rows skipped: %s",
            {k: len(v) for k, v in skipped.items()},
        )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
