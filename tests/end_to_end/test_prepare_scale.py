"""The data-preparation scale benchmark, at 1 % of the corpora's size.

``benchmarks/prepare_scale.py`` builds trees shaped as LibriSpeech
train-clean-100, a Common Voice language and Speech Commands v0.02, runs
each recipe's prepare script on them and the LibriSpeech task sampler on
the result; here at ``--scale 0.01``: every script runs, the manifests hold
every file, and the figures are written.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def test_prepare_scale_runs_at_one_percent(tmp_path):
    from prepare_scale import main

    document = main(
        ["--scale", "0.01", "--json", str(tmp_path), "--work", str(tmp_path)]
    )
    rows = {r["corpus"]: r for r in document["rows"]}
    assert set(rows) == {"LibriSpeech", "CommonVoice", "Google-speech-commands"}
    for row in rows.values():
        assert row["seconds"] > 0 and row["peak_mib"] > 0
    sampler = rows["LibriSpeech"]["sampler"]
    assert sampler["rows"] == rows["LibriSpeech"]["shape"]["files"] == 285
    assert sampler["tasks"] == rows["LibriSpeech"]["shape"]["speakers"] == 3
    assert sampler["episodes_per_second"] > 0
    with open(tmp_path / "prepare_scale.json") as f:
        assert json.load(f)["scale"] == 0.01
