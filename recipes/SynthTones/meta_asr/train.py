#!/usr/bin/env python3
"""Meta-train a CTC recogniser over synthetic speakers (tasks).

A standard SpeechBrain CTC recipe whose Brain is put behind a meta-learning
Brain from the yaml (``meta_brain_class``) and trained on task episodes.
After training, the held-out test tasks are scored before adaptation (k = 0)
and after adapting to K support utterances of each task.

To run::

    python train.py hparams/maml.yaml
    python train.py hparams/reptile.yaml --inner_steps=5

Authors
 * speechbrain-meta developers 2026
"""

import json
import os
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta import meta_brain_class

logger = get_logger(__name__)


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
                stats_meta={"epoch": epoch, "outer_steps": self.optimizer_step},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"CER": stats["CER"]}, min_keys=["CER"]
            )
        else:
            self.test_stats = stats
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )


def dataio_prepare(hparams):
    """Datasets with audio and CTC-token pipelines, and the label encoder."""
    datasets = {}
    for split in ("train", "dev", "test"):
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=hparams[f"{split}_csv"],
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
        all_sets, ["id", "sig", "wrd", "spk_id", "tokens"]
    )
    return datasets, tokenizer


def main(argv):
    """Prepare data, meta-train, and evaluate on held-out tasks."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from synth_tones_prepare import prepare_synth_tones

    run_on_main(
        prepare_synth_tones,
        kwargs={"save_folder": hparams["data_folder"], **hparams["corpus"]},
    )
    datasets, tokenizer = dataio_prepare(hparams)

    Brain = meta_brain_class(ASR, hparams["meta_brain_class"])
    asr_brain = Brain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    asr_brain.tokenizer = tokenizer
    asr_brain.fit(
        asr_brain.hparams.epoch_counter,
        datasets["train"],
        datasets["dev"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["eval_dataloader_opts"],
    )

    # Meta-test on held-out tasks: before (k=0 steps) and after adaptation.
    results = {}
    for name, steps in (("unadapted", 0), ("adapted", None)):
        asr_brain.hparams.eval_inner_steps = (
            steps if steps is not None else hparams["eval_inner_steps"]
        )
        asr_brain.evaluate(
            datasets["test"],
            min_key="CER",
            test_loader_kwargs=dict(hparams["eval_dataloader_opts"]),
        )
        results[name] = {k: float(v) for k, v in asr_brain.test_stats.items()}
    results["method"] = hparams["meta"]["method"]
    # The evaluated checkpoint is the best on meta-dev CER.
    results["outer_steps"] = asr_brain.optimizer_step
    results["skipped_episodes"] = asr_brain.skipped_episodes
    with open(
        os.path.join(hparams["output_folder"], "meta_test.json"),
        "w",
        encoding="utf-8",
    ) as fout:
        json.dump(results, fout, indent=2)
    logger.info("Meta-test results: %s", results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
