"""The main job's exported models adapted without transcripts.

``recipes/SynthDigits/meta_asr/unsupervised_adaptation.py`` on the quick
main job: every asked (method, set) gets its unadapted row, its
unsupervised k-shot rows (the support given as audio alone) and its
per-utterance row, on the main job's own episodes, with how often the
adaptation hurt a task.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")


def test_unsupervised_rows_of_an_exported_model(quick_benchmark, tmp_path):
    sys.path.insert(0, RECIPE)
    from unsupervised_adaptation import main

    _, bench, _ = quick_benchmark
    out = tmp_path / "unsupervised"
    assert main(["--benchmark_folder", str(bench), "--output_folder",
                 str(out), "--methods", "joint", "--sets", "test"]) == 0  # fmt: skip
    with open(out / "unsupervised.json") as f:
        (row,) = json.load(f)
    assert row["method"] == "joint" and row["set"] == "test"
    assert set(row["cer"]) == {"k=0", "k=1", "k=5", "k=10", "each"}
    assert set(row["hurt_tasks"]) == {"k=1", "k=5", "k=10", "each"}
    # One utterance cannot be validated: the default abstains at k = 1.
    assert row["abstained"]["k=1"] > 0
    with open(out / "1234" / "joint" / "test" / "few_shot_results.json") as f:
        document = json.load(f)
    adapted = [r for r in document["results"] if r["k_shot"]]
    assert all(r["adaptation"]["unsupervised"] for r in adapted)
    assert os.path.isfile(out / "unsupervised.md")
    # Runs of several seeds are merged without running anything again.
    merged = tmp_path / "merged"
    assert main(["--benchmark_folder", str(bench), "--output_folder",
                 str(merged), "--merge", f"{out},{out}"]) == 0  # fmt: skip
    with open(merged / "unsupervised.json") as f:
        assert json.load(f) == [row, row]
    assert (
        "| mean of 2 | joint | test |"
        in (merged / "unsupervised.md").read_text()
    )
