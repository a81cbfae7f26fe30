"""The main job's rows without transcripts, collected per seed.

``recipes/SynthDigits/meta_asr/unsupervised_adaptation.py`` on the quick
main job: every asked (method, set) gets its unadapted row, its k-shot
rows without transcripts (the support given as audio alone, through the
exported model) and its per-utterance row, on the main job's own
episodes, with how often the adaptation hurt a task.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")


def test_unsupervised_rows_of_the_main_job(quick_benchmark, tmp_path):
    sys.path.insert(0, RECIPE)
    from unsupervised_adaptation import main

    _, bench, _ = quick_benchmark
    out = tmp_path / "unsupervised"
    assert main(["--benchmark_folder", str(bench), "--output_folder",
                 str(out), "--methods", "joint", "--sets", "test"]) == 0  # fmt: skip
    with open(out / "unsupervised.json") as f:
        (row,) = json.load(f)
    assert row["method"] == "joint" and row["set"] == "test"
    # The quick protocol's k = 0, 1, 5, each utterance adapted to alone,
    # and its baseline: each utterance transcribed alone, unadapted.
    assert set(row["cer"]) == {"k=0", "k=1", "k=5", "alone", "each"}
    assert set(row["hurt_tasks"]) == {"k=1", "k=5", "each"}
    results = bench / "seed1234" / "joint" / "few_shot" / "test"
    with open(results / "few_shot_results.json") as f:
        document = json.load(f)
    (one,) = [r for r in document["results"]
              if r["budget"] == "unsupervised" and r["k_shot"] == 1]  # fmt: skip
    assert row["cer"]["k=1"] == round(100 * one["cer_mean"], 1)
    # The export's adaptation, chosen on meta-dev, is not validated again:
    # it abstains in every episode if it chose 0 steps, else in none.
    steps = one["adaptation"]["steps"]
    assert row["abstained"]["k=1"] == (0 if steps else one["n_episodes"])
    assert "| 1234 | joint | test |" in (out / "unsupervised.md").read_text()
    # A folder without such rows is refused, not tabled empty.
    assert main(["--benchmark_folder", str(tmp_path / "none")]) == 1
