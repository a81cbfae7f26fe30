"""`torchrun --nproc_per_node=2 train.py hparams/fomaml.yaml` runs through.

The SynthTones recipe (a CRDNN with BatchNorm) on two gloo processes, a few
epochs: the process group is joined, checkpoints are saved (atomically, on
every rank's schedule), the model is tested and exported by the main
process alone, and both processes exit cleanly.
"""

import os
import socket
import subprocess
import sys

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
