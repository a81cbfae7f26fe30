"""What an exported model writes where nobody speaks.

``recipes/SynthDigits/meta_asr/edge_silence.py`` on the quick main job's
joint model: its silence row and one row per set, whose insertions,
deletions and substitutions add up to the CER, and the synthetic sets
scored again with silence at their edges.
"""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")


def test_silence_and_error_kinds_on_every_set(quick_benchmark, tmp_path):
    sys.path.insert(0, RECIPE)
    from edge_silence import main

    _, bench, _ = quick_benchmark
    model = f"joint={bench / 'seed1234' / 'joint' / 'inference'}"
    main([model, "--data_folder", str(bench / "data"), "--output_folder",
          str(tmp_path), "--utterances", "6", "--pad", "0.5"])  # fmt: skip
    with open(tmp_path / "edge_silence.json") as f:
        document = json.load(f)
    result = document["results"]["joint"]
    assert set(result["silence"]) == {"zeros_1s", "noise_1s_-50dBFS"}
    assert all(isinstance(t, str) for t in result["silence"].values())
    rows = result["sets"]
    assert list(rows) == ["unseen languages", "unseen voices", "real voices"]
    for name, row in rows.items():
        assert row["utterances"] == 6
        kinds = row["insertions"] + row["deletions"] + row["substitutions"]
        assert kinds == pytest.approx(row["cer"], abs=1e-3)
        assert ("cer_with_edges" in row) == (name != "real voices")
    table = (tmp_path / "edge_silence.md").read_text()
    assert "| joint | real voices | 6 |" in table
    assert "CER % with 0.5 s of silence each side" in table
