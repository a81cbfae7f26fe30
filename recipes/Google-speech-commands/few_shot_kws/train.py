#!/usr/bin/env python3
"""Few-shot keyword spotting on Google Speech Commands: N-way K-shot.

A task is N keywords never seen in training, with K recordings of each
(Vinyals et al., 2016; Parnami & Lee, 2020 for keyword spotting). The
meta-train, meta-dev and meta-test keywords are disjoint (the ten standard
commands are the meta-test classes) and so are their speakers
(``prepare_GSC.py``). The model is a small x-vector classifier from
SpeechBrain's lobes (``Xvector`` embedding, ``Classifier`` head); every
method starts a task from a *prototype head*: the output layer made of the
support's class prototypes (``speechbrain_meta.algorithms.PrototypeHead``),
so one model serves any N. The methods (``hparams/<method>.yaml``):

* ``protonet``: prototypical networks (Snell et al., 2017), no inner step;
* ``maml``: second-order MAML from the prototype head (Proto-MAML,
  Triantafillou et al., 2020);
* ``anil``: ANIL, the inner loop adapts only the output layer;
* ``layer_step_lr``: a learned update rule, MAML++'s per-layer per-step rates;
* ``joint``: the fine-tuning baseline, a classifier trained on all the
  meta-train keywords at once (a plain ``sb.Brain`` step), then fine-tuned
  from the prototype head on each task's support.

Checkpoints are selected on meta-dev episodes (classification error after
adaptation), and each method's adaptation (its own rule, or SGD or Adam at
a few rates and step counts) on meta-dev keywords; then
``speechbrain_meta.evaluation.WayShotProtocol`` scores
each method's accuracy, with 95 % confidence intervals, on seeded 5- and
10-way, 1- and 5-shot episodes of the meta-test keywords:
``few_shot/test/few_shot_results.{json,md}``.

To run::

    python train.py hparams/protonet.yaml --data_folder=/path/to/GSC

Authors
 * speechbrain-meta developers 2026
"""

import os
import sys

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta import meta_brain_class
from speechbrain_meta.data.manifest import load_manifest
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.evaluation import (
    WayShotProtocol,
    candidate_adaptations,
    choose_way_shot_adaptation,
    way_shot_table,
    write_way_shot_results,
)
from speechbrain_meta.layered_yaml import layered_experiment
from speechbrain_meta.recipe import train_method

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = os.path.join(HERE, "hparams", "models", "common.yaml")
sys.path.insert(0, HERE)
from prepare_GSC import prepare_GSC  # noqa: E402


class KeywordClassifier(sb.Brain):
    """An utterance classifier: Fbank, x-vector embedding, output layer.

    In an N-way episode the targets are the classes' positions in the
    episode (``way``); in a plain batch (joint training) the keyword's
    index among the meta-train keywords (``command_encoded``).
    """

    def compute_forward(self, batch, stage):
        """Log-probabilities of the classes, ``[batch, 1, classes]``."""
        wavs, wav_lens = batch.sig
        feats = self.hparams.compute_features(wavs)
        feats = self.modules.mean_var_norm(feats, wav_lens)
        embeddings = self.modules.embedding_model(feats, wav_lens)
        return self.modules.classifier(embeddings)

    def compute_objectives(self, predictions, batch, stage):
        """The negative log-likelihood; the error rate outside training."""
        if hasattr(batch, "way"):
            targets = batch.way
        else:
            targets = batch.command_encoded.data.squeeze(-1)
        targets = targets.to(predictions.device).unsqueeze(1)
        loss = self.hparams.compute_cost(predictions, targets)
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(batch.id, predictions, targets)
        return loss

    def on_stage_start(self, stage, epoch=None):
        """A fresh error tracker for validation and test."""
        if stage != sb.Stage.TRAIN:
            self.error_metrics = self.hparams.error_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs; checkpoints on the meta-dev error after adaptation."""
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["error"] = self.error_metrics.summarize("average")
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "updates": self.optimizer_step},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"error": stats["error"], "epoch": epoch},
                min_keys=["error"],
            )


def pad_or_crop(signal, samples):
    """A clip made ``samples`` long: zeros appended, or the end cut.

    Arguments
    ---------
    signal : torch.Tensor
        ``(time,)``.
    samples : int
        The length wanted.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> pad_or_crop(torch.ones(3), 5).tolist()
    [1.0, 1.0, 1.0, 0.0, 0.0]
    >>> pad_or_crop(torch.ones(7), 5).shape
    torch.Size([5])
    """
    if len(signal) >= samples:
        return signal[:samples]
    return torch.nn.functional.pad(signal, (0, samples - len(signal)))


def dataio_prepare(hparams):
    """Datasets (every row checked up front), audio and label pipelines.

    Every clip is padded (zeros at the end) or cropped to
    ``clip_seconds``: Speech Commands' clips are at most 1 s and often
    shorter; the model then sees one length, with or without noise.
    """
    datasets, skipped = {}, {}
    for split in ("train", "dev", "test"):
        datasets[split], skipped[split] = load_manifest(
            hparams[f"{split}_csv"],
            text_key="command",
            bad_input=hparams["bad_input"],
            audio_checks=hparams["audio_checks"],
        )

    # Every clip is `clip_seconds` long for the model: real clips cut
    # short are padded with zeros at the end, longer ones cropped.
    samples = int(round(hparams["clip_seconds"] * hparams["sample_rate"]))

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return pad_or_crop(sb.dataio.dataio.read_audio(wav), samples)

    # Background noise on the meta-train clips only, as data: the support
    # and query of a training episode alike, never a held-out clip (the
    # prototypes and fine-tuning of a test task see clean audio).
    add_noise = hparams["add_noise"]

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def noisy_audio_pipeline(wav):
        sig = pad_or_crop(sb.dataio.dataio.read_audio(wav), samples)
        return add_noise(sig.unsqueeze(0), torch.ones(1)).squeeze(0)

    sb.dataio.dataset.add_dynamic_item(
        [datasets["train"]],
        audio_pipeline if add_noise is None else noisy_audio_pipeline,
    )
    sb.dataio.dataset.add_dynamic_item(
        [datasets["dev"], datasets["test"]], audio_pipeline
    )
    # Joint training's targets: the keyword among the meta-train keywords.
    encoder = sb.dataio.encoder.CategoricalEncoder()

    @sb.utils.data_pipeline.takes("command")
    @sb.utils.data_pipeline.provides("command_encoded")
    def label_pipeline(command):
        return torch.LongTensor([encoder.encode_label(command)])

    encoder.load_or_create(
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        from_didatasets=[datasets["train"]],
        output_key="command",
    )
    joint = hparams["training"] == "joint"
    if joint and len(encoder) != hparams["out_neurons"]:
        raise ValueError(
            f"{len(encoder)} meta-train keywords in {hparams['train_csv']}: "
            f"joint training needs out_neurons: {len(encoder)} (it is "
            f"{hparams['out_neurons']})"
        )
    if joint:
        encoder.expect_len(hparams["out_neurons"])
    else:  # the indices are joint training's outputs only
        encoder.ignore_len()
    sb.dataio.dataset.add_dynamic_item([datasets["train"]], label_pipeline)
    sb.dataio.dataset.set_output_keys(
        [datasets["train"]], ["id", "sig", "command", "command_encoded"]
    )
    sb.dataio.dataset.set_output_keys(
        [datasets["dev"], datasets["test"]], ["id", "sig", "command"]
    )
    for split, bad in skipped.items():
        logger.info(
            "%s: %d clips, %d skipped", split, len(datasets[split]), len(bad)
        )
    return datasets, encoder, skipped


def make_brain(hparams, run_opts, **overrides):
    """The method's brain: the keyword classifier behind its meta brain."""
    Brain = meta_brain_class(KeywordClassifier, hparams["meta_brain_class"])
    return Brain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams={**hparams, **overrides},
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        meta_algorithm=hparams["meta_algorithm"],
        rule_opt_class=hparams.get("rule_opt_class"),
    )


def choose_adaptation(hparams, brain, dev_data):
    """The method's adaptation (rule, rate, steps), chosen on meta-dev.

    Every method is scored on the same meta-dev episodes with its own rule
    and with SGD and Adam at the ``adaptation_search`` rates and steps; the
    most accurate is used on the meta-test keywords.
    """
    search = hparams["adaptation_search"]
    dev = WayShotProtocol(
        dev_data,
        "command",
        ways=[search["n_way"]],
        shots=[search["k_shot"]],
        episodes=search["episodes"],
        query_per_class=search["query_per_class"],
        seed=hparams["few_shot"]["seed"],
        dataset_name="Google-speech-commands/dev",
    )
    candidates = candidate_adaptations(
        search["rules"], search["sgd_lrs"], search["adam_lrs"], search["modes"]
    )
    adaptation, tried = choose_way_shot_adaptation(
        dev, brain, candidates, search["steps"]
    )
    logger.info("Adaptation chosen on meta-dev: %s", adaptation)
    return adaptation, tried


def run(hparams_file, run_opts, overrides):
    """Prepares the corpus, trains the method, runs the N-way K-shot test.

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
    list of dict
        The few-shot result rows.
    """
    init_process_group(run_opts)  # torchrun: join the process group
    hparams = layered_experiment(hparams_file, COMMON, overrides)
    run_on_main(
        prepare_GSC,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["output_folder"],
            "test_words": hparams["test_words"],
            "dev_words": hparams["dev_words"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    datasets, _, skipped = dataio_prepare(hparams)
    logger.info(
        "%s: %s training, %d epochs, learning rate %g",
        hparams["method"],
        hparams["training"],
        hparams["number_of_epochs"],
        hparams["lr"],
    )
    train_method(
        lambda **kw: make_brain(hparams, run_opts, **kw),
        hparams,
        run_opts,
        datasets,
    )
    # Evaluate the checkpoint selected on meta-dev.
    hparams["checkpointer"].recover_if_possible(min_key="error")
    brain = make_brain(hparams, run_opts)
    rows = []
    if hparams["run_few_shot"]:
        adaptation, tried = choose_adaptation(hparams, brain, datasets["dev"])
        protocol = WayShotProtocol(
            datasets["test"],
            "command",
            dataset_name="Google-speech-commands/test",
            **hparams["few_shot"],
        )
        rows = protocol.evaluate(brain, hparams["method"], adaptation)
        folder = os.path.join(hparams["output_folder"], "few_shot", "test")
        write_way_shot_results(
            folder,
            protocol,
            rows,
            adaptation_search=tried,
            skipped={k: len(v) for k, v in skipped.items()},
        )
        if if_main_process():
            print(way_shot_table(rows))
    return rows


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    run(hparams_file, run_opts, overrides)
