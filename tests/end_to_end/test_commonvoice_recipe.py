"""The Common Voice meta-ASR recipe on a stand-in corpus.

espeak-ng speakers of five languages written in Common Voice's exact layout
(48 kHz mp3 clips, ``train/dev/test/validated.tsv`` with the newer
``accents`` columns, and a language with the older ``accent`` ones;
``speechbrain_meta.data.standins``), with bad rows planted in a tsv: the
prepare script names and skips them, and the language and accent rows of
``tests/recipes/CommonVoice.csv`` run as upstream's recipe tests run them
(debug flags split as a shell would, ``--debug``).
"""

import csv
import json
import os
import shlex
import subprocess
import sys

import pytest

from speechbrain_meta.data.standins import common_voice_standin

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "CommonVoice", "meta_asr")
LANGUAGES = {
    "en": {"train": 3, "dev": 3, "test": 3},
    "de": {"train": 2},
    "fr": {"train": 2},
    "es": {"dev": 2},
}


def _rows():
    with open(os.path.join(ROOT, "tests", "recipes", "CommonVoice.csv")) as f:
        return {
            os.path.basename(r["Hparam_file"])[:-5]: r
            for r in csv.DictReader(f)
        }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """``tests/tmp/CommonVoice`` with 4 bad rows in ``de/train.tsv``."""
    work = tmp_path_factory.mktemp("commonvoice")
    corpus = work / "tests" / "tmp" / "CommonVoice"
    common_voice_standin(str(corpus), LANGUAGES)
    # Polish from a release with the older columns (`accent`).
    common_voice_standin(
        str(corpus), {"pl": {"test": 2}}, columns="old", seed=1
    )
    tsv = corpus / "de" / "train.tsv"
    with open(tsv) as f:
        header = f.readline().rstrip("\n").split("\t")
        first = dict(zip(header, f.readline().rstrip("\n").split("\t")))
    clips = corpus / "de" / "clips"
    (clips / "empty.mp3").write_bytes(b"")
    bad = [
        dict(first, path="gone.mp3"),  # line 6: missing clip
        dict(first, path="empty.mp3"),  # 7: unreadable
        dict(first, sentence="?!…"),  # 8: empty once normalised
        dict(first, sentence="Der привет."),  # 9: outside the units
    ]
    with open(tsv, "a") as f:
        for row in bad:
            f.write("\t".join(row[c] for c in header) + "\n")
    return work


def test_prepare_names_counts_and_skips_bad_rows(workdir, tmp_path):
    sys.path.insert(0, RECIPE)
    from common_voice_prepare import prepare_common_voice

    corpus = workdir / "tests" / "tmp" / "CommonVoice"
    units = "abcdefghijklmnopqrstuvwxyz' àéèêëïîôöüûùçñáíóúąćęłńśźżß"
    summary = prepare_common_voice(
        str(corpus), str(tmp_path), ["en", "de", "fr"], ["es"], ["pl"],
        allowed_characters=units,
    )  # fmt: skip
    de = summary["languages"]["de"]
    assert de["skipped"] == {
        "missing clip": 1,
        "unreadable clip": 1,
        "empty sentence": 1,
        "characters outside the units": 1,
    }
    lines = sorted(sum(de["skipped_lines"].values(), []))
    assert lines == [
        f"{corpus / 'de' / 'train.tsv'}:{n}" for n in (14, 15, 16, 17)
    ]
    assert de["utterances"] == 12  # 2 speakers x 6
    assert summary["languages"]["pl"]["utterances"] == 12  # old columns
    assert summary["languages"]["en"]["accents"]  # read from `accents`
    with open(tmp_path / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["lang"] for r in rows} == {"en", "de", "fr"}
    assert all(set(r["wrd"]) <= set(units) for r in rows)
    assert all(r["wav"].endswith(".wav") for r in rows)
    import soundfile as sf

    assert sf.info(rows[0]["wav"]).samplerate == 16000


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
    with open(out / "few_shot" / "test" / "few_shot_results.json") as f:
        return json.load(f)["results"]


@pytest.mark.parametrize(
    "method, tasks",
    [("fomaml", {"pl"}), ("accent_fomaml", {"Scottish English"})],
)
def test_recipe_row_runs(workdir, method, tasks):
    rows = _run_row(_rows()[method], workdir)
    assert {r["k_shot"] for r in rows} == {0, 2}
    assert all(set(r["cer_per_task"]) == tasks for r in rows)
