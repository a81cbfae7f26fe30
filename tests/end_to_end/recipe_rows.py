"""Upstream-style recipe tests: a recipe's rows of ``tests/recipes/<Dataset>.csv``
run as SpeechBrain's recipe tests run them (the debug flags split as a shell
would, ``--debug``), and their ``test_debug_checks`` files checked.
"""

import csv
import json
import os
import shlex
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def recipe_rows(dataset):
    """The rows of ``tests/recipes/<dataset>.csv``, by hparams file name
    (without ``.yaml``)."""
    with open(os.path.join(ROOT, "tests", "recipes", f"{dataset}.csv")) as f:
        return {
            os.path.basename(r["Hparam_file"])[:-5]: r
            for r in csv.DictReader(f)
        }


def copy_sample(name, cwd):
    """Copies the committed corpus sample ``tests/samples/<name>`` (what
    the rows run on, ``tests/samples/make_samples.py``) to the same place
    under ``cwd``, where a test may spoil it; returns the copy's path."""
    copy = cwd / "tests" / "samples" / name
    shutil.copytree(os.path.join(ROOT, "tests", "samples", name), copy)
    return copy


def run_recipe_row(row, cwd, launcher=()):
    """Runs one row in ``cwd``; asserts it succeeds and leaves the files
    its ``test_debug_checks`` name. ``launcher``: e.g. a ``torchrun``
    command (then with the gloo backend). Returns its output folder."""
    command = (
        list(launcher or [sys.executable])
        + [os.path.join(ROOT, row["Script_file"])]
        + [os.path.join(ROOT, row["Hparam_file"])]
        + shlex.split(row["test_debug_flags"])
        + ["--debug", "--debug_persistently", "--noprogressbar"]
    )
    if launcher:
        command.append("--distributed_backend=gloo")
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


def few_shot_results(out, split="test"):
    """The result rows a recipe run wrote for ``split``."""
    with open(out / "few_shot" / split / "few_shot_results.json") as f:
        return json.load(f)["results"]
