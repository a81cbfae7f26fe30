"""SIGKILL at random points (mid meta-batch, during a save), resume: the
final state (weights, learned rates, both Adam optimisers, the Noam
schedule, the random generators) equals an uninterrupted run's, bitwise,
with dropout on."""

import os
import random
import signal
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _start(data, save, out):
    env = dict(os.environ)
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, os.path.join(HERE, "kill_resume_worker.py"), data,
         save, out],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )  # fmt: skip


def _run_to_end(data, save, out):
    proc = _start(data, save, out)
    lines = proc.stdout.read().split()
    assert proc.wait() == 0 and lines[-1] == "finished"
    return torch.load(out, weights_only=False)


def _kill_when(proc, event, count):
    """SIGKILLs the worker at its count-th ``event`` line; True if it did."""
    seen = 0
    for line in proc.stdout:
        if line.strip() == event:
            seen += 1
            if seen == count:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
    proc.wait()
    return False


def test_sigkill_anywhere_then_resume_is_exact(tmp_path):
    data = str(tmp_path / "data")
    full = _run_to_end(data, str(tmp_path / "full"), str(tmp_path / "a.pt"))
    assert full["steps"] == 8

    save, out = str(tmp_path / "killed"), str(tmp_path / "b.pt")
    rng = random.Random(2026)
    # Kill points: during a save, then at random episodes (an odd count
    # lands mid meta-batch), then let it finish.
    plan = [("saving", 2)] + [("episode", rng.randint(2, 5)) for _ in range(3)]
    kills = 0
    for event, count in plan:
        kills += _kill_when(_start(data, save, out), event, count)
        if event == "saving":
            # The kill landed inside the save (the saver announces itself,
            # then takes 0.3 s to write): what it left is a hidden partial
            # folder, and every listed checkpoint is complete.
            names = os.listdir(save)
            assert any(n.startswith(".partial-") for n in names), names
            for name in names:
                if name.startswith("CKPT+"):
                    files = os.listdir(os.path.join(save, name))
                    assert "CKPT.yaml" in files and "slow.ckpt" in files
    assert kills == len(plan)
    assert any(c % 2 == 0 for e, c in plan if e == "episode")  # mid-batch
    resumed = _run_to_end(data, save, out)
    assert resumed["steps"] == full["steps"]
    for key, value in full["modules"].items():
        assert torch.equal(value, resumed["modules"][key]), key
    for key, value in full["rule"].items():  # the learned rates
        assert torch.equal(value, resumed["rule"][key]), key
    assert not torch.allclose(
        full["rule"][key], torch.full_like(full["rule"][key], 0.1).log()
    )  # they were trained
    for optimizer in ("optimizer", "rule_optimizer"):
        for pid, state in full[optimizer]["state"].items():
            for name, value in state.items():
                assert torch.equal(
                    torch.as_tensor(value),
                    torch.as_tensor(resumed[optimizer]["state"][pid][name]),
                ), (optimizer, pid, name)
    # The schedule resumed at its step: the same learning rate at the end.
    assert full["scheduler_steps"] == resumed["scheduler_steps"] == 8
    assert full["lr"] == resumed["lr"]
    assert torch.equal(full["rng"], resumed["rng"])
