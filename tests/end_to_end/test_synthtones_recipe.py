"""The SynthTones recipe runs end to end with every method's hparams file."""

import json
import os
import sys

import pytest
from hyperpyyaml import load_hyperpyyaml

from speechbrain_meta import meta_brain_class
from speechbrain_meta.asr import CTCASR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthTones", "meta_asr")


@pytest.mark.parametrize("method", ["maml", "fomaml", "reptile", "anil"])
def test_recipe_runs(method, tmp_path):
    sys.path.insert(0, RECIPE)
    try:
        import train
    finally:
        sys.path.remove(RECIPE)
    out = tmp_path / method
    hparams_file = os.path.join(RECIPE, "hparams", f"{method}.yaml")
    overrides = [
        f"--output_folder={out}",
        f"--data_folder={tmp_path / 'data'}",
        "--corpus={n_train_tasks: 4, n_dev_tasks: 2, n_test_tasks: 2, "
        "utts_per_task: 16, seed: 3}",
        "--number_of_epochs=1",
        "--episodes_per_epoch=4",
        "--grad_accumulation_factor=2",
        "--eval_inner_steps=2",
    ]
    train.main([hparams_file, *overrides, "--device=cpu", "--noprogressbar"])
    with open(out / "meta_test.json") as f:
        saved = json.load(f)
    assert saved["method"] == method
    assert saved["outer_steps"] == 2
    for stage in ("unadapted", "adapted"):
        assert 0 <= saved[stage]["CER"] and saved[stage]["loss"] > 0
    assert "epoch: 1" in (out / "train_log.txt").read_text()

    # The unadapted score, recomputed from the saved checkpoint and the
    # saved configuration by a brain built here.
    with open(out / "hyperparams.yaml") as f:
        hparams = load_hyperpyyaml(f)
    assert hparams["method"] == method
    datasets, tokenizer = train.dataio_prepare(hparams)
    brain = meta_brain_class(CTCASR, hparams["meta_brain_class"])(
        modules=hparams["modules"],
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
        checkpointer=hparams["checkpointer"],
    )
    brain.tokenizer = tokenizer
    brain.hparams.eval_inner_steps = 0
    brain.evaluate(
        datasets["test"],
        min_key="CER",
        test_loader_kwargs=dict(hparams["eval_dataloader_opts"]),
    )
    assert brain.test_stats["CER"] == pytest.approx(saved["unadapted"]["CER"])
