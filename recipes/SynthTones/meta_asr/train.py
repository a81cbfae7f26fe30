#!/usr/bin/env python3
"""Meta-train a CTC recogniser over synthetic speakers (tasks).

A standard SpeechBrain CTC recipe whose Brain is put behind a meta-learning
Brain from the yaml (``meta_brain_class``) and trained on task episodes.
After training, the held-out test tasks are scored before adaptation (k = 0)
and after adapting to K support utterances of each task.

To run::

    python train.py hparams/maml.yaml
    python train.py hparams/reptile.yaml --eval_inner_steps=5

Each ``hparams/<method>.yaml`` holds what the method changes;
``hparams/models/common.yaml`` what every method shares.

Authors
 * speechbrain-meta developers 2026
"""

import json
import os
import sys

import speechbrain as sb
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta import meta_brain_class
from speechbrain_meta.asr import CTCASR, add_ctc_pipelines
from speechbrain_meta.distributed import init_process_group
from speechbrain_meta.inference import export_run
from speechbrain_meta.layered_yaml import layered_experiment

logger = get_logger(__name__)
HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = os.path.join(HERE, "hparams", "models", "common.yaml")


def dataio_prepare(hparams):
    """Datasets with audio and CTC-token pipelines, and the label encoder."""
    datasets = {}
    for split in ("train", "dev", "test"):
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=hparams[f"{split}_csv"],
            replacements={"data_root": hparams["data_folder"]},
        )

    tokenizer = add_ctc_pipelines(
        datasets,
        os.path.join(hparams["save_folder"], "label_encoder.txt"),
        hparams["blank_index"],
    )
    all_sets = list(datasets.values())
    sb.dataio.dataset.set_output_keys(
        all_sets, ["id", "sig", "wrd", "spk_id", "tokens"]
    )
    return datasets, tokenizer


def main(argv):
    """Prepare data, meta-train, and evaluate on held-out tasks."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    init_process_group(run_opts)  # torchrun: join the process group
    hparams = layered_experiment(hparams_file, COMMON, overrides)
    sys.path.insert(0, HERE)
    from synth_tones_prepare import prepare_synth_tones

    run_on_main(
        prepare_synth_tones,
        kwargs={"save_folder": hparams["data_folder"], **hparams["corpus"]},
    )
    datasets, tokenizer = dataio_prepare(hparams)

    Brain = meta_brain_class(CTCASR, hparams["meta_brain_class"])
    asr_brain = Brain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
        meta_algorithm=hparams["meta_algorithm"],
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
    results["method"] = hparams["method"]
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
    if if_main_process():
        # The model for AdaptiveASR: its own adaptation, validated.
        export_run(
            hparams["output_folder"],
            asr_brain,
            tokenizer,
            asr_brain.own_adaptation().replace(**hparams["default_adaptation"]),
            info={"method": hparams["method"], "recipe": "SynthTones/meta_asr"},
        )
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
