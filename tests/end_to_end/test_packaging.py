"""The package installs with its console scripts and hparams fragments."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_install_gives_the_console_scripts(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--target", str(target), ROOT,
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}
    for script in ("speechbrain-meta-adapt", "speechbrain-meta-transcribe"):
        proc = subprocess.run(
            [sys.executable, str(target / "bin" / script), "--help"],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(tmp_path),
        )
        assert proc.returncode == 0, proc.stderr
        assert "--model" in proc.stdout
    fragments = os.listdir(target / "speechbrain_meta" / "hparams")
    assert {"maml.yaml", "fomaml.yaml", "metasgd.yaml"} <= set(fragments)
