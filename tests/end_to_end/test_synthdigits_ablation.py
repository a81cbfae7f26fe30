"""The base-recogniser ablation of the SynthDigits recipe, at a tiny size."""

import json
import os
import runpy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")


def test_ablation_trains_and_scores_each_variant(tmp_path):
    module = runpy.run_path(os.path.join(RECIPE, "ablation.py"))
    tiny = (
        "{corpus: {speakers_per_language: 2, utts_per_speaker: 16, "
        "heldout_utts_per_speaker: 32, train_languages: [en, de], "
        "dev_languages: [da], test_languages: [el]}, "
        "real_speech: {utts_per_speaker: 32}, joint_epochs: 1, "
        "warm_start_epoch: 1, episodes_per_epoch: 4, "
        "few_shot_voice_tasks: 1%s}"
    )
    out = tmp_path / "ablation"
    module["main"](
        [
            "--output_folder",
            str(out),
            "base=" + tiny % "",
            "lr=" + tiny % ", lr: 0.01",
        ]
    )
    done = json.loads((out / "ablation.json").read_text())
    assert set(done) == {"base/1234", "lr/1234"}
    assert done["lr/1234"]["overrides"]["lr"] == 0.01
    for entry in done.values():
        scores = entry["scores"]
        for split in ("dev", "test", "test_voices"):
            assert 0 <= scores[f"{split}/k0"] <= 2
            assert f"{split}/k10/adam0.003" in scores
    # One corpus for both (same corpus settings), a model each.
    assert len(list(out.glob("data_*"))) == 1
    assert (out / "lr" / "1234" / "save").is_dir()
    table = (out / "ablation.md").read_text()
    assert table.count("\n") == 4 and "| lr | 1234 |" in table
    # --trained scores models already trained instead of training them:
    # base's models under base's overrides give base's scores again.
    module["main"](
        [
            "--output_folder",
            str(out),
            "--trained",
            "again=" + str(out / "base" / "{seed}"),
            "again=" + tiny % "",
        ]
    )
    done = json.loads((out / "ablation.json").read_text())
    assert done["again/1234"]["scores"] == done["base/1234"]["scores"]
    assert len(list(out.glob("data_*"))) == 1
