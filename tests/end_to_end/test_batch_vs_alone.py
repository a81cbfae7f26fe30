"""Exported models in padded batches and alone, on every set.

``recipes/SynthDigits/meta_asr/batch_vs_alone.py`` on the quick main
job's joint model: one row per set, and with batches of one utterance
(no padding) the two columns agree exactly.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")


def test_batches_and_alone_on_every_set(quick_benchmark, tmp_path):
    sys.path.insert(0, RECIPE)
    from batch_vs_alone import main

    _, bench, _ = quick_benchmark
    model = f"joint={bench / 'seed1234' / 'joint' / 'inference'}"
    for batch_size in (3, 1):
        out = tmp_path / f"b{batch_size}"
        main([model, "--data_folder", str(bench / "data"), "--output_folder",
              str(out), "--utterances", "6", "--batch_size",
              str(batch_size)])  # fmt: skip
        with open(out / "batch_vs_alone.json") as f:
            rows = json.load(f)["results"]
        assert [r["set"] for r in rows] == [
            "unseen languages",
            "unseen voices",
            "real voices",
        ]
        assert all(r["utterances"] == 6 and r["alone"] >= 0 for r in rows)
        assert (
            "| joint | real voices | 6 |"
            in (out / "batch_vs_alone.md").read_text()
        )
    # Batches of one hold no padding: the same transcripts.
    assert all(r["batch"] == r["alone"] for r in rows)
