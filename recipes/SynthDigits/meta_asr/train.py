#!/usr/bin/env python3
"""Meta-ASR on SynthDigits: adapt to unseen languages from k utterances.

One recipe for every method, selected by the hparams file:

* ``maml``, ``fomaml``, ``reptile``, ``anil``: meta-train the
  initialisation over languages (tasks), warm-started from the joint model;
* ``joint``: multitask training on the pooled meta-train languages (a plain
  ``sb.Brain``), the same number of updates;
* ``scratch``: no training (random initialisation);
* ``lora``, ``adapter``: the joint model with ``speechbrain.nnet.adapters``.

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

import json
import os
import sys

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta import SGD, meta_brain_class
from speechbrain_meta.data.manifest import load_manifest
from speechbrain_meta.evaluation import FewShotProtocol, write_results
from speechbrain_meta.interpret import learned_rates, write_rate_report
from speechbrain_meta.task_params import insert_adapters

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))


class ASR(sb.Brain):
    """An ordinary SpeechBrain CTC Brain (nothing meta-specific)."""

    def compute_forward(self, batch, stage):
        """Waveform -> features -> encoder -> CTC log-probabilities."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        feats = self.hparams.compute_features(wavs)
        feats = self.modules.normalize(feats, wav_lens)
        encoded = self.modules.encoder(feats)
        logits = self.modules.ctc_lin(encoded)
        return self.hparams.log_softmax(logits), wav_lens

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; greedy decoding and CER/WER outside training."""
        p_ctc, wav_lens = predictions
        tokens, tokens_lens = batch.tokens
        loss = self.hparams.ctc_cost(p_ctc, tokens, wav_lens, tokens_lens)
        if stage != sb.Stage.TRAIN:
            sequences = sb.decoders.ctc_greedy_decode(
                p_ctc, wav_lens, blank_id=self.hparams.blank_index
            )
            hyps = [list(self.tokenizer.decode_ndim(seq)) for seq in sequences]
            refs = [list(w) for w in batch.wrd]
            self.cer_metric.append(batch.id, hyps, refs)
            self.wer_metric.append(
                batch.id,
                ["".join(h).split() for h in hyps],
                [w.split() for w in batch.wrd],
            )
        return loss

    def on_stage_start(self, stage, epoch=None):
        """Fresh error-rate trackers for each evaluation stage."""
        if stage != sb.Stage.TRAIN:
            self.cer_metric = self.hparams.cer_computer()
            self.wer_metric = self.hparams.wer_computer()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, and checkpoints on the meta-dev CER."""
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["CER"] = self.cer_metric.summarize("error_rate")
        stats["WER"] = self.wer_metric.summarize("error_rate")
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "updates": self.optimizer_step},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            meta = {"CER": stats["CER"], "updates": self.optimizer_step}
            warm_start = getattr(self.hparams, "warm_start_epoch", None)
            if self.hparams.training == "joint" and epoch == warm_start:
                # The meta-learners' starting point: kept for good.
                meta["warm_start"] = True
            self.checkpointer.save_and_keep_only(
                meta=meta,
                min_keys=["CER"],
                ckpt_predicate=lambda c: not c.meta.get("warm_start"),
            )


def dataio_prepare(hparams):
    """Datasets (bad rows skipped and named), pipelines, label encoder."""
    datasets, skipped = {}, {}
    for split in ("train", "dev", "test", "test_voices"):
        datasets[split], skipped[split] = load_manifest(
            hparams[f"{split}_csv"],
            replacements={"data_root": hparams["data_folder"]},
        )

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    tokenizer = sb.dataio.encoder.CTCTextEncoder()

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("char_list", "tokens")
    def text_pipeline(wrd):
        char_list = list(wrd)
        yield char_list
        yield torch.LongTensor(tokenizer.encode_sequence(char_list))

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(all_sets, text_pipeline)
    tokenizer.load_or_create(
        path=os.path.join(hparams["save_folder"], "label_encoder.txt"),
        from_didatasets=[datasets["train"]],
        output_key="char_list",
        special_labels={"blank_label": hparams["blank_index"]},
        sequence_input=True,
    )
    sb.dataio.dataset.set_output_keys(
        all_sets, ["id", "sig", "wrd", "spk_id", "lang", "tokens"]
    )
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


# Settings of the method itself, not handed on to the joint model's run.
METHOD_KEYS = {
    "output_folder", "save_folder", "train_log", "method", "training",
    "number_of_epochs", "init_from_joint", "lr", "opt_class", "inner_lr",
    "inner_steps", "meta", "meta_algorithm", "meta_brain_class", "adapters",
    "adapted_modules", "run_few_shot", "rule_opt_class", "meta_train_init",
    "adapt_lr_grid", "adapt_lr_k", "task_params",
}  # fmt: skip


def _joint_overrides(overrides, joint_folder):
    """The shared overrides of this run, for the joint model's run."""
    if isinstance(overrides, dict):
        parsed = dict(overrides)
    else:
        parsed = yaml.safe_load(overrides or "") or {}
    shared = {k: v for k, v in parsed.items() if k not in METHOD_KEYS}
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


def train(hparams, run_opts, datasets, tokenizer):
    """Trains the model as the method says (meta, joint or not at all)."""
    training = hparams["training"]
    if training == "none":
        if not hparams["init_from_joint"]:
            fit_input_normalization(hparams, run_opts, datasets["train"])
        return None
    if training == "joint":
        # A plain sb.Brain on pooled batches: the same number of updates
        # and utterances per update as meta-training.
        brain = ASR(
            modules=hparams["modules"],
            opt_class=hparams["opt_class"],
            hparams={**hparams, "grad_accumulation_factor": 1},
            run_opts=run_opts,
            checkpointer=hparams["checkpointer"],
        )
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
        # Model selection on the meta-dev languages (unadapted CER).
        brain.tokenizer = tokenizer
        brain.fit(
            hparams["epoch_counter"],
            datasets["train"],
            datasets["dev"],
            train_loader_kwargs=train_kwargs,
            valid_loader_kwargs={"batch_size": 16},
        )
        return brain
    if training != "meta":
        raise ValueError(f"Unknown training {training!r}: meta|joint|none")
    Brain = meta_brain_class(ASR, hparams["meta_brain_class"])
    brain = Brain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.tokenizer = tokenizer
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["dev"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    return brain


def few_shot_evaluation(hparams, run_opts, datasets, tokenizer):
    """Runs the few-shot protocol on every evaluation set, unless done."""
    # The method's own brain adapts: its rule, its trainable parameters.
    Brain = meta_brain_class(ASR, hparams["meta_brain_class"])
    brain = Brain(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts=run_opts,
        meta_algorithm=hparams["meta_algorithm"],
    )
    brain.tokenizer = tokenizer
    if hparams.get("adapt_lr_grid"):
        select_adapt_lr(brain, hparams, datasets["dev"])
    if list(brain.meta_algorithm.inner_loop.update_rule.parameters()):
        report_learned_rates(brain, hparams, datasets["dev"])
    results = {}
    for split, group_by in (hparams["few_shot_sets"] or {}).items():
        tasks = None
        if split == "test_voices":
            tasks = _first_tasks(
                datasets[split], group_by, hparams["few_shot_voice_tasks"]
            )
        protocol = FewShotProtocol(
            datasets[split],
            group_by=group_by,
            tasks=tasks,
            dataset_name=f"SynthDigits/{split}",
            **hparams["few_shot"],
        )
        out_dir = os.path.join(hparams["output_folder"], "few_shot", split)
        description = protocol.description()
        done = os.path.join(out_dir, "few_shot_results.json")
        if os.path.exists(done):
            with open(done, encoding="utf-8") as fin:
                previous = json.load(fin)
            if previous["protocol"] == description:
                logger.info("Few-shot results already in %s", done)
                results[split] = previous
                continue
        rows = protocol.evaluate(brain, hparams["method"])
        for row in rows:
            row["adapt_lr"] = _adapt_lr(brain)
        results[split] = write_results(
            out_dir,
            description,
            rows,
            title=f"SynthDigits {split}: {hparams['method']}",
        )
    return results


def _meta_dev_protocol(hparams, dev_data, k, episodes, query):
    """Few-shot episodes of the meta-dev languages (selection, reports)."""
    return FewShotProtocol(
        dev_data,
        group_by=hparams["group_by"],
        k_shots=[k],
        episodes_per_task=episodes,
        query_utterances=query,
        adapt_steps=hparams["few_shot"]["adapt_steps"],
        seed=hparams["few_shot"]["seed"],
        dataset_name="SynthDigits/dev",
    )


def report_learned_rates(brain, hparams, dev_data):
    """Writes the learned rule's rates per layer and step (meta-dev support)."""
    k = hparams["n_support"]
    protocol = _meta_dev_protocol(hparams, dev_data, k, episodes=1, query=1)
    task = protocol.tasks[0]
    support = protocol.batch(protocol.episode(task, 0, k)[0], brain.device)
    rows = learned_rates(brain, support, protocol.adapt_steps)
    paths = write_rate_report(
        rows,
        hparams["output_folder"],
        title=f"SynthDigits {hparams['method']}: learned inner rates "
        f"(meta-dev task {task})",
    )
    logger.info("Learned rates written to %s", paths["md"])
    return rows


def _adapt_lr(brain):
    return getattr(brain.meta_algorithm.inner_loop.update_rule, "lr", None)


def select_adapt_lr(brain, hparams, dev_data):
    """Picks the fine-tuning learning rate on the meta-dev languages.

    The baselines' rule is plain SGD; its rate is chosen from
    ``adapt_lr_grid`` by the few-shot CER at ``adapt_lr_k`` shots on
    meta-dev (never on meta-test). The choice is cached in the output
    folder.
    """
    cache = os.path.join(hparams["output_folder"], "adapt_lr.json")
    grid = [float(lr) for lr in hparams["adapt_lr_grid"]]
    inner_loop = brain.meta_algorithm.inner_loop
    if os.path.exists(cache):
        with open(cache, encoding="utf-8") as fin:
            chosen = json.load(fin)
        if chosen.get("grid") == grid:
            inner_loop.update_rule = SGD(chosen["lr"])
            return chosen["lr"]
    protocol = _meta_dev_protocol(
        hparams, dev_data, hparams["adapt_lr_k"], episodes=2, query=10
    )
    scores = {}
    for lr in grid:
        inner_loop.update_rule = SGD(lr)
        row = protocol.evaluate(brain, f"{hparams['method']}@lr={lr}")[0]
        scores[lr] = row["cer_mean"]
    best = min(grid, key=lambda lr: scores[lr])
    inner_loop.update_rule = SGD(best)
    logger.info("Fine-tuning lr %s selected on meta-dev: %s", best, scores)
    with open(cache, "w", encoding="utf-8") as fout:
        json.dump({"grid": grid, "lr": best, "dev_cer": scores}, fout)
    return best


def _first_tasks(dataset, key, n):
    from speechbrain_meta.data.sampler import _group_key_values

    values = sorted({str(v) for v in _group_key_values(dataset, key)})
    return values[:n]


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


def run(hparams_file, run_opts, overrides):
    """Runs one method (see ``main``).

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
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    sys.path.insert(0, HERE)
    from synth_digits_prepare import prepare_synth_digits

    run_on_main(
        prepare_synth_digits,
        kwargs={"save_folder": hparams["data_folder"], **hparams["corpus"]},
    )
    datasets, tokenizer, skipped = dataio_prepare(hparams)

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
    results = {}
    if hparams["run_few_shot"]:
        results = few_shot_evaluation(hparams, run_opts, datasets, tokenizer)
    if any(skipped.values()):
        logger.warning(
            "Manifest rows skipped: %s",
            {k: len(v) for k, v in skipped.items()},
        )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
