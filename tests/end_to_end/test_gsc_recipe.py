"""The Speech Commands few-shot KWS recipe on a stand-in corpus.

espeak-ng words in many voices, written in Speech Commands' exact layout
(``<word>/<speaker>_nohash_<n>.wav``, the two lists, background noise;
``speechbrain_meta.corpora.standins``), with bad clips planted in it: the
prepare script names and skips them, and every row of
``tests/recipes/Google-speech-commands.csv`` runs as upstream's recipe tests
run it (debug flags through a shell's word splitting, with ``--debug``),
once on two processes under ``torchrun``.
"""

import csv
import importlib.util
import json
import os
import socket
import sys

import numpy as np
import pytest
import soundfile as sf
from recipe_rows import copy_sample, recipe_rows, run_recipe_row

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "Google-speech-commands", "few_shot_kws")
TEST = ["yes", "no", "up", "down", "left"]
DEV = ["bed", "bird", "cat"]
TRAIN = ["zero", "one", "two", "three"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """``tests/samples/Google-speech-commands`` (10 speakers, 3 held out
    for validation and 3 for testing, each saying every word twice) with 4
    bad clips in it."""
    work = tmp_path_factory.mktemp("gsc")
    corpus = copy_sample("Google-speech-commands", work)
    listed = set()
    for name in ("validation_list.txt", "testing_list.txt"):
        listed |= set((corpus / name).read_text().split())
    train_spk = max(
        p.name.split("_")[0]
        for p in (corpus / "zero").iterdir()
        if f"zero/{p.name}" not in listed
    )
    (corpus / "zero" / f"{train_spk}_nohash_0.wav").write_bytes(b"")
    sf.write(corpus / "one" / f"{train_spk}_nohash_1.wav",
             np.zeros(8000, dtype=np.float32), 8000)  # fmt: skip
    sf.write(corpus / "two" / f"{train_spk}_nohash_1.wav",
             np.zeros((16000, 2), dtype=np.float32), 16000)  # fmt: skip
    with open(corpus / "testing_list.txt", "a") as f:
        f.write("yes/ffffffff_nohash_0.wav\n")  # a missing clip
    return work


def test_prepare_names_counts_and_skips_bad_clips(workdir, tmp_path):
    sys.path.insert(0, RECIPE)
    from prepare_GSC import prepare_GSC

    corpus = workdir / "tests" / "samples" / "Google-speech-commands"
    summary = prepare_GSC(str(corpus), str(tmp_path), TEST, DEV)
    splits = summary["splits"]
    assert splits["train"]["skipped"] == {
        "unreadable audio file": 1,
        "sample rate 8000 (not 16000)": 1,
        "2 channels (not mono)": 1,
    }
    assert splits["test"]["skipped"] == {"missing clip": 1}
    lines = sum(1 for _ in open(corpus / "testing_list.txt"))
    assert splits["test"]["skipped_clips"]["missing clip"] == [
        f"{corpus / 'testing_list.txt'}:{lines}"
    ]
    # Classes and speakers are disjoint across the splits.
    assert splits["train"]["classes"] == 4 and splits["test"]["classes"] == 5
    assert splits["train"]["clips"] == 4 * 4 * 2 - 3
    assert splits["test"]["clips"] == 5 * 3 * 2
    assert splits["dev"]["clips"] == 3 * 3 * 2
    speakers = {}
    for split in ("train", "dev", "test"):
        with open(tmp_path / f"{split}.csv") as f:
            rows = list(csv.DictReader(f))
        speakers[split] = {r["spk_id"] for r in rows}
        words = {r["command"] for r in rows}
        assert words == set({"train": TRAIN, "dev": DEV, "test": TEST}[split])
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    # As the real corpus: six noise recordings (of 3 s in the sample, of
    # about a minute in the corpus and in the stand-in's default), and
    # clips cut short of 1 s.
    assert summary["noise_recordings"] == 6
    assert summary["noise_minutes"] == 0.3
    assert splits["test"]["shorter_than_1s"] > 0
    assert splits["test"]["shortest_s"] < 0.9


def test_every_clip_reaches_the_model_at_1s(workdir, tmp_path):
    """Short clips are padded, with and without the background noise."""
    from speechbrain.augment.time_domain import AddNoise

    spec = importlib.util.spec_from_file_location(
        "gsc_few_shot_kws_train", os.path.join(RECIPE, "train.py")
    )
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    corpus = workdir / "tests" / "samples" / "Google-speech-commands"
    train.prepare_GSC(str(corpus), str(tmp_path), TEST, DEV)
    hparams = {
        **{f"{s}_csv": str(tmp_path / f"{s}.csv") for s in ("train", "dev",
                                                          "test")},
        "bad_input": "skip",
        "audio_checks": None,
        "sample_rate": 16000,
        "clip_seconds": 1.0,
        "add_noise": AddNoise(csv_file=str(tmp_path / "noise.csv"),
                              snr_low=5, snr_high=20),
        "save_folder": str(tmp_path),
        "training": "meta",
        "out_neurons": 4,
    }  # fmt: skip
    datasets = train.dataio_prepare(hparams)[0]
    for split in ("train", "test"):
        durations = [r["duration"] for r in datasets[split].data.values()]
        assert min(durations) < 0.9, split  # short clips are there
        for i in range(len(datasets[split])):
            assert datasets[split][i]["sig"].shape == (16000,), split


@pytest.mark.parametrize(
    "method", ["protonet", "maml", "anil", "layer_step_lr", "joint"]
)
def test_recipe_row_runs(workdir, method):
    out = run_recipe_row(recipe_rows("Google-speech-commands")[method], workdir)
    with open(out / "few_shot" / "test" / "few_shot_results.json") as f:
        document = json.load(f)
    rows = document["results"]
    assert {(r["n_way"], r["k_shot"]) for r in rows} == {
        (2, 1), (2, 2), (5, 1), (5, 2)
    }  # fmt: skip
    assert all(0.0 <= r["accuracy_mean"] <= 100.0 for r in rows)
    assert all(r["n_episodes"] == 3 for r in rows)
    assert all(r["trainable_params"] > 0 for r in rows)
    # own rule at its own steps and at 2, SGD at 2: 3 or 4 tried on meta-dev
    tried = document["adaptation_search"]
    assert 3 <= len(tried) <= 4
    chosen = max(tried, key=lambda t: t["accuracy_mean"])["accuracy_mean"]
    assert rows[0]["adaptation"] in [
        t["adaptation"] for t in tried if t["accuracy_mean"] == chosen
    ]
    assert document["protocol"]["classes"] == sorted(TEST)
    with open(out / "prepare_summary.json") as f:
        prepared = json.load(f)["splits"]
    assert sum(prepared["train"]["skipped"].values()) == 3
    assert document["skipped"]["train"] == 0  # none left for training


def test_recipe_row_runs_under_torchrun(workdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    row = dict(recipe_rows("Google-speech-commands")["maml"])
    row["test_debug_flags"] = row["test_debug_flags"].replace(
        "Google-speech-commands_maml", "Google-speech-commands_maml_ddp"
    )
    launcher = [sys.executable, "-m", "torch.distributed.run"]
    launcher += ["--nproc_per_node=2", f"--master_port={port}"]
    out = run_recipe_row(row, workdir, launcher)
    assert "epoch: 1" in (out / "train_log.txt").read_text()
