"""The SynthTones recipe runs end to end with every method's hparams file."""

import json
import os
import sys

import pytest

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
    results = train.main(
        [
            os.path.join(RECIPE, "hparams", f"{method}.yaml"),
            f"--output_folder={out}",
            f"--data_folder={tmp_path / 'data'}",
            "--corpus={n_train_tasks: 4, n_dev_tasks: 2, n_test_tasks: 2, "
            "utts_per_task: 16, seed: 3}",
            "--number_of_epochs=1",
            "--episodes_per_epoch=4",
            "--grad_accumulation_factor=2",
            "--eval_inner_steps=2",
            "--device=cpu",
            "--noprogressbar",
        ]
    )
    with open(out / "meta_test.json") as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(results))
    assert saved["method"] == method
    assert saved["outer_steps"] == 2
    for stage in ("unadapted", "adapted"):
        assert 0 <= saved[stage]["CER"] and saved[stage]["loss"] > 0
    assert os.path.exists(out / "train_log.txt")
