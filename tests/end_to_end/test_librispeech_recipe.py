"""The LibriSpeech speaker-adaptation recipe on a stand-in corpus.

A few espeak-ng speakers written in LibriSpeech's exact layout (flac files
and ``*.trans.txt`` per chapter, ``speechbrain_meta.corpora.standins``), with
bad lines planted in it: the prepare script names and skips them, and the
recipe's ``tests/recipes/LibriSpeech.csv`` row runs as upstream's recipe
tests run it (its debug flags through a shell's word splitting, with
``--debug``): joint training first, then the method, the few-shot protocol
and the export, with the files the row's checks name.
"""

import csv
import importlib.util
import json
import os
import shutil
import sys

import pytest
from recipe_rows import copy_sample, recipe_rows, run_recipe_row

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "LibriSpeech", "speaker_adaptation")
SPLITS_ROLES = ("train", "dev", "test")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding ``tests/samples/LibriSpeech`` (4 speakers in
    ``train-clean-100``, 2 in the others, 2 chapters of 5 utterances
    each) with 4 bad lines in it."""
    work = tmp_path_factory.mktemp("librispeech")
    corpus = copy_sample("LibriSpeech", work)
    chapter = corpus / "train-clean-100" / "1000" / "100000"
    (chapter / "1000-100000-0001.flac").unlink()  # missing
    (chapter / "1000-100000-0002.flac").write_bytes(b"")  # unreadable
    good = chapter / "1000-100000-0000.flac"
    shutil.copy(good, chapter / "1000-100000-0098.flac")
    shutil.copy(good, chapter / "1000-100000-0099.flac")
    with open(chapter / "1000-100000.trans.txt", "a") as f:
        f.write("1000-100000-0098\n")  # empty transcript
        f.write("1000-100000-0099 THE 42 MEN\n")  # outside the units
    return work


def test_prepare_names_counts_and_skips_bad_lines(workdir, tmp_path):
    sys.path.insert(0, RECIPE)
    from librispeech_prepare import prepare_librispeech

    corpus = workdir / "tests" / "samples" / "LibriSpeech"
    summary = prepare_librispeech(str(corpus), str(tmp_path))
    train = summary["splits"]["train-clean-100"]
    assert train["skipped"] == {
        "missing audio file": 1,
        "unreadable audio file": 1,
        "empty transcript": 1,
        "characters outside the model's labels": 1,
    }
    trans = str(corpus / "train-clean-100/1000/100000/1000-100000.trans.txt")
    lines = sorted(sum(train["skipped_lines"].values(), []))
    assert lines == [f"{trans}:{n}" for n in (2, 3, 6, 7)]
    assert train["utterances"] == 4 * 10 - 2 and train["speakers"] == 4
    assert summary["splits"]["test-clean"]["utterances"] == 20
    with open(tmp_path / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 38
    # upstream's spk_id: speaker-chapter (the recipe makes it the speaker)
    assert {r["spk_id"].split("-")[0] for r in rows} == {
        "1000",
        "1001",
        "1002",
        "1003",
    }
    assert all(r["ID"].startswith(r["spk_id"] + "-") for r in rows)
    assert all(
        set(r["wrd"]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ") for r in rows
    )
    # Done once: a rerun with the same settings reads the summary back.
    again = prepare_librispeech(str(corpus), str(tmp_path))
    assert again["splits"]["train-clean-100"]["skipped"] == train["skipped"]


def _train_module():
    spec = importlib.util.spec_from_file_location(
        "librispeech_speaker_adaptation_train", os.path.join(RECIPE, "train.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rewrite(path, change):
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = [change(dict(r)) for r in rows]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_upstream_manifests_length_policy_and_disjoint_roles(
    workdir, tmp_path, caplog
):
    """Upstream's spk_id (speaker-chapter) gives speakers as tasks; what
    the length caps drop is logged; a speaker in two roles stops the run.
    """
    train = _train_module()
    corpus = workdir / "tests" / "samples" / "LibriSpeech"
    train.prepare_librispeech(str(corpus), str(tmp_path))

    def upstream(row):  # spk_id as upstream's librispeech_prepare writes it
        assert row["spk_id"] == "-".join(row["ID"].split("-")[:2])
        if row["ID"].endswith("-0003"):
            row["duration"] = "30.0"  # a long utterance in every chapter
        return row

    for split in ("train", "dev", "test"):
        _rewrite(tmp_path / f"{split}.csv", upstream)
    hparams = {
        "bad_input": "skip",
        "audio_checks": None,
        "sample_rate": 16000,
        "hop_length": 10,
        "time_pooling_size": 1,
        "avoid_if_longer_than": 16.0,
        "eval_avoid_if_longer_than": None,
        "save_folder": str(tmp_path / "save"),
        "blank_index": 0,
        "output_neurons": len(train.LABELS) + 1,
        **{f"{s}_csv": str(tmp_path / f"{s}.csv") for s in SPLITS_ROLES},
    }
    os.makedirs(hparams["save_folder"])
    with caplog.at_level("INFO"):
        datasets, _, _ = train.dataio_prepare(hparams)
    speakers = {r["spk_id"] for r in datasets["train"].data.values()}
    assert speakers == {"1000", "1001", "1002", "1003"}
    assert "speaker-chapter ids" in caplog.text
    # The 8 chapters of train-clean-100 each lose their 30 s utterance;
    # dev and test keep theirs.
    assert len(datasets["train"]) == 38 - 8
    assert len(datasets["dev"]) == len(datasets["test"]) == 20
    assert "train: 8 utterances longer than 16.0 s dropped" in caplog.text
    assert "dev: 0 utterances longer than None s dropped" in caplog.text
    assert "longest kept 30.0 s" in caplog.text

    with open(tmp_path / "test.csv") as f:
        leaked = list(csv.DictReader(f))[0]
    with open(tmp_path / "dev.csv", "a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(leaked)).writerow(
            dict(leaked, ID="leak")
        )
    with pytest.raises(ValueError, match="in both dev and test"):
        train.dataio_prepare(hparams)


@pytest.mark.parametrize("method", ["fomaml", "lhuc"])
def test_recipe_row_runs(workdir, method):
    out = run_recipe_row(recipe_rows("LibriSpeech")[method], workdir)
    with open(out / "few_shot" / "test" / "few_shot_results.json") as f:
        rows = json.load(f)["results"]
    assert {r["k_shot"] for r in rows} == {0, 2}
    # Every test speaker is a task, scored on its own utterances.
    assert all(set(r["cer_per_task"]) == {"1006", "1007"} for r in rows)
    assert all(0.0 <= r["cer_mean"] for r in rows)
