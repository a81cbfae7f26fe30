"""The CoVoST 2 speech-translation recipe on a stand-in in its layout.

A Common Voice-layout corpus of espeak-ng speakers (48 kHz mp3 clips,
``validated.tsv``) and CoVoST 2's translation files
(``covost_v2.<lang>_en.tsv``: tabs, no quoting, ``train_covost`` rows, an
empty translation, a clip the release does not have;
``speechbrain_meta.corpora.standins.covost_standin``): the preparation reads
them as they are, and the rows of ``tests/recipes/CoVoST.csv`` run as
upstream's recipe tests run them (debug flags split as a shell would).
"""

import csv
import json
import os

import pytest
from recipe_rows import (
    copy_sample,
    few_shot_results,
    recipe_rows,
    run_recipe_row,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """``tests/samples/CoVoST/{cv,covost}`` (de, fr, es, it)."""
    work = tmp_path_factory.mktemp("covost")
    copy_sample("CoVoST", work)
    return work


def test_fomaml_row_prepares_covost_and_is_scored_by_bleu(workdir):
    """The fomaml row (it trains the joint model first): the manifests
    hold each role's CoVoST split with its translation (quotes kept as
    characters, ``train_covost`` rows in meta-train), the quirks are
    skipped and named with file and line, and the test language's rows
    carry BLEU."""
    cwd = workdir
    out = run_recipe_row(recipe_rows("CoVoST")["fomaml"], cwd)
    results = few_shot_results(out)
    prepared = cwd / "tests" / "tmp" / "CoVoST_prepared"
    with open(prepared / "train.csv", newline="") as f:
        train = list(csv.DictReader(f))
    assert {r["lang"] for r in train} == {"de", "fr"}
    assert all(r["translation"] for r in train)
    assert any(r["translation"].startswith('"') for r in train)
    clips = {os.path.basename(r["wav"])[:-4] + ".mp3" for r in train}
    with open(prepared / "test.csv", newline="") as f:
        assert {r["lang"] for r in csv.DictReader(f)} == {"it"}
    covost = cwd / "tests" / "samples" / "CoVoST" / "covost"
    with open(covost / "covost_v2.de_en.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    extra = {r["path"] for r in rows if r["split"] == "train_covost"}
    (empty,) = [r["path"] for r in rows if not r["translation"]]
    assert extra and extra <= clips | {empty}
    assert empty not in clips
    summary = json.loads((prepared / "prepare_summary.json").read_text())
    skipped = summary["languages"]["de"]["skipped_lines"]
    assert [w.rsplit(":", 1)[0] for w in skipped["empty translation"]] == [
        str(covost / "covost_v2.de_en.tsv")
    ]
    assert len(skipped["not in validated.tsv"]) == 1
    assert {r["k_shot"] for r in results} == {0, 2}
    for row in results:
        assert 0.0 <= row["bleu_mean"] <= 1.0
        assert set(row["cer_per_task"]) == {"it"}
    log = (out / "train_log.txt").read_text()
    assert "valid BLEU" in log


@pytest.mark.parametrize("method", ["reptile", "metasgd", "lhuc", "lora"])
def test_method_rows_run(workdir, method):
    """The other methods' rows run from the joint model and score BLEU."""
    results = few_shot_results(
        run_recipe_row(recipe_rows("CoVoST")[method], workdir)
    )
    assert all("bleu_mean" in r for r in results)
