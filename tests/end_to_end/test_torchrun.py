"""`torchrun --nproc_per_node=2 train.py hparams/fomaml.yaml` runs through,
for every training script here.

The SynthTones recipe (a CRDNN with BatchNorm) on two gloo processes, a few
epochs: the process group is joined, checkpoints are saved (atomically, on
every rank's schedule), the model is tested and exported by the main
process alone, and both processes exit cleanly.
"""

import csv
import os
import shlex
import socket
import subprocess
import sys

import pytest
from recipe_rows import copy_sample

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthTones", "meta_asr")


def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "run"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc_per_node=2", f"--master_port={port}",
        "train.py", "hparams/fomaml.yaml",
        "--distributed_backend=gloo",
        f"--output_folder={out}",
        f"--data_folder={tmp_path / 'data'}",
        "--number_of_epochs=3", "--episodes_per_epoch=4",
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=RECIPE, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    log = (out / "train_log.txt").read_text()
    assert log.count("epoch:") == 3
    checkpoints = [p.name for p in (out / "save").iterdir()]
    assert any(n.startswith("CKPT+") for n in checkpoints)
    assert not any(n.startswith(".partial") for n in checkpoints)
    assert (out / "inference" / "hyperparams.yaml").exists()
    assert (out / "meta_test.json").exists()


@pytest.mark.parametrize(
    "dataset", ["SynthDigits", "LibriSpeech", "CommonVoice"]
)
def test_torchrun_runs_every_training_script(tmp_path, dataset):
    """The recipe's fomaml row (its joint model first), on two processes."""
    if dataset != "SynthDigits":  # the others: the committed samples
        copy_sample(dataset, tmp_path)
    with open(os.path.join(ROOT, "tests", "recipes", f"{dataset}.csv")) as f:
        row = next(
            r
            for r in csv.DictReader(f)
            if r["Hparam_file"].endswith("/fomaml.yaml")
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
        + [f"--master_port={port}", os.path.join(ROOT, row["Script_file"])]
        + [os.path.join(ROOT, row["Hparam_file"])]
        + shlex.split(row["test_debug_flags"])
        + ["--distributed_backend=gloo", "--noprogressbar"]
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, env=env,
        timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    flags = dict(f.split("=", 1) for f in shlex.split(row["test_debug_flags"]))
    out = tmp_path / flags["--output_folder"]
    joint = tmp_path / flags["--joint_folder"]
    # Both models trained (each rank a share of every update), evaluated
    # and exported once.
    assert "epoch: 2" in (joint / "train_log.txt").read_text()
    assert (out / "train_log.txt").exists()
    assert (out / "few_shot" / "test" / "few_shot_results.json").exists()
    assert (out / "inference" / "hyperparams.yaml").exists()
    assert not list(out.glob("**/*.tmp"))
