"""The LibriSpeech speaker-adaptation recipe on a stand-in corpus.

A few espeak-ng speakers written in LibriSpeech's exact layout (flac files
and ``*.trans.txt`` per chapter, ``speechbrain_meta.data.standins``), with
bad lines planted in it: the prepare script names and skips them, and the
recipe's ``tests/recipes/LibriSpeech.csv`` row runs as upstream's recipe
tests run it (its debug flags through a shell's word splitting, with
``--debug``): joint training first, then the method, the few-shot protocol
and the export, with the files the row's checks name.
"""

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from speechbrain_meta.data.standins import librispeech_standin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "LibriSpeech", "speaker_adaptation")
SPLITS = {"train-clean-100": 4, "dev-clean": 2, "test-clean": 2}


def _rows():
    with open(os.path.join(ROOT, "tests", "recipes", "LibriSpeech.csv")) as f:
        return {
            os.path.basename(r["Hparam_file"])[:-5]: r
            for r in csv.DictReader(f)
        }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding ``tests/tmp/LibriSpeech`` with 4 bad lines in it."""
    work = tmp_path_factory.mktemp("librispeech")
    corpus = work / "tests" / "tmp" / "LibriSpeech"
    librispeech_standin(
        str(corpus), SPLITS, chapters_per_speaker=2, utterances_per_chapter=5
    )
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

    corpus = workdir / "tests" / "tmp" / "LibriSpeech"
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
    assert {r["spk_id"] for r in rows} == {"1000", "1001", "1002", "1003"}
    assert all(
        set(r["wrd"]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ") for r in rows
    )
    # Done once: a rerun with the same settings reads the summary back.
    again = prepare_librispeech(str(corpus), str(tmp_path))
    assert again["splits"]["train-clean-100"]["skipped"] == train["skipped"]


def _run_row(row, cwd):
    command = (
        [sys.executable, os.path.join(ROOT, row["Script_file"])]
        + [os.path.join(ROOT, row["Hparam_file"])]
        + shlex.split(row["test_debug_flags"])
        + ["--debug", "--debug_persistently"]
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env=env, timeout=900
    )
    assert run.returncode == 0, run.stderr[-4000:]
    flags = dict(f.split("=", 1) for f in shlex.split(row["test_debug_flags"]))
    out = cwd / flags["--output_folder"]
    checks = row["test_debug_checks"].split("file_exists=[")[1].split("]")[0]
    for name in checks.split(","):
        assert (out / name).exists(), name
    return out


@pytest.mark.parametrize("method", ["fomaml", "lhuc"])
def test_recipe_row_runs(workdir, method):
    out = _run_row(_rows()[method], workdir)
    with open(out / "few_shot" / "test" / "few_shot_results.json") as f:
        rows = json.load(f)["results"]
    assert {r["k_shot"] for r in rows} == {0, 2}
    # Every test speaker is a task, scored on its own utterances.
    assert all(set(r["cer_per_task"]) == {"1006", "1007"} for r in rows)
    assert all(0.0 <= r["cer_mean"] for r in rows)
