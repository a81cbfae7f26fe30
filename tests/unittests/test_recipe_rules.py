"""SpeechBrain's recipe rules, enforced here without upstream's sources.

The rules of upstream's ``tests/consistency/test_recipe.py`` and
``test_yaml.py`` (``tests/utils/check_yaml.py``), so that every recipe
here could be submitted as it is:

* every hparams file under ``recipes/<Dataset>/`` (except those under a
  ``models/`` folder: files other hparams files build on) is listed in
  ``tests/recipes/<Dataset>.csv``, in upstream's columns, with debug flags;
* the files a row names exist, and the script, hparams file and README are
  there;
* every top-level variable an hparams file declares is used by its script
  (``hparams["x"]``, ``hparams.x``, ``hparams.get("x"``, ``modules.x``...)
  or by a ``!ref`` later in the same file, or is a SpeechBrain run option;
* every training script joins the process group (``torchrun``), and the
  recipes for corpora on disk leave ``data_folder`` to the user;
* the rows of those recipes read corpus samples committed under
  ``tests/samples/``, so they run from a fresh clone's root.
"""

import csv
import glob
import os
import re

import pytest
from speechbrain.utils.run_opts import RunOptions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
COLUMNS = [
    "Task", "Dataset", "Script_file", "Hparam_file", "Data_prep_file",
    "Readme_file", "Result_url", "HF_repo", "test_debug_flags",
    "test_debug_checks", "performance",
]  # fmt: skip
DATASETS = sorted(
    d
    for d in os.listdir(os.path.join(ROOT, "recipes"))
    if not d.startswith(".")
)
SYNTHETIC = {"SynthDigits", "SynthTones"}  # corpora the recipes generate


def _rows(dataset):
    with open(os.path.join(ROOT, "tests", "recipes", f"{dataset}.csv")) as f:
        reader = csv.DictReader(f, skipinitialspace=True)
        assert reader.fieldnames == COLUMNS
        return list(reader)


ROWS = [row for d in DATASETS for row in _rows(d)]


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_hparams_file_is_listed_with_debug_flags(dataset):
    found = {
        os.path.relpath(p, ROOT)
        for p in glob.glob(
            os.path.join(ROOT, "recipes", dataset, "**", "*.yaml"),
            recursive=True,
        )
        if "/models/" not in p
    }
    rows = _rows(dataset)
    assert found == {r["Hparam_file"] for r in rows}
    assert all(r["test_debug_flags"].strip() for r in rows)
    assert all(r["Dataset"] == dataset for r in rows)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["Hparam_file"])
def test_listed_and_mandatory_files_exist(row):
    for field in ("Script_file", "Hparam_file", "Readme_file"):
        assert os.path.isfile(os.path.join(ROOT, row[field])), field
    for path in row["Data_prep_file"].split():
        assert os.path.isfile(os.path.join(ROOT, path)), path


def declared_variables(hparams_file):
    """Top-level variables the script must use (upstream's reading).

    A variable referenced (``<var>`` in a ``!ref``) after it is declared is
    used by the file itself.
    """
    declared = []
    with open(hparams_file, encoding="utf-8") as f:
        for line in f:
            if len(line) <= 1 or line.startswith("#"):
                continue
            line = line.rstrip()
            if ":" in line and not line[0].isspace():
                if "!!" not in line and "!apply" not in line:
                    declared.append(line[: line.find(":")])
            if "!ref" in line:
                for name in re.findall(r"<([^<>\[\]]+)[\[>]", line):
                    if name in declared:
                        declared.remove(name)
    return declared


def _used(script, name):
    patterns = [
        f'["{name}"]', f"hparams.{name}", f"modules.{name}",
        f'attr(self.hparams, "{name}"', f'hparams.get("{name}"',
    ]  # fmt: skip
    return any(p in script for p in patterns)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["Hparam_file"])
def test_every_yaml_variable_is_used_by_its_script(row):
    with open(os.path.join(ROOT, row["Script_file"]), encoding="utf-8") as f:
        script = f.read()
    run_options = set(RunOptions().as_dict())
    unused = [
        name
        for name in declared_variables(os.path.join(ROOT, row["Hparam_file"]))
        if name not in run_options and not _used(script, name)
    ]
    assert not unused, f"{row['Hparam_file']}: not used by the script"


def test_the_yaml_rule_can_fail(tmp_path):
    """The reading above finds an unused variable, and a referenced one."""
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb: !ref <a>\nc: 2\n# d: 3\n    e: 4\n")
    assert declared_variables(str(path)) == ["b", "c"]
    assert _used('x = hparams["b"]', "b") and not _used("hparams_c", "c")


@pytest.mark.parametrize(
    "script", sorted({r["Script_file"] for r in ROWS}), ids=str
)
def test_training_scripts_join_the_process_group(script):
    with open(os.path.join(ROOT, script), encoding="utf-8") as f:
        text = f.read()
    assert "init_process_group(run_opts)" in text or "ddp_init_group(" in text


@pytest.mark.parametrize("dataset", [d for d in DATASETS if d not in SYNTHETIC])
def test_the_user_gives_the_data_folder(dataset):
    files = glob.glob(
        os.path.join(ROOT, "recipes", dataset, "**", "*.yaml"), recursive=True
    )
    texts = [open(p, encoding="utf-8").read() for p in files]
    assert any("data_folder: !PLACEHOLDER" in t for t in texts)
    assert not any(
        re.search(r"^data_folder: (?!!PLACEHOLDER)", t, re.M) for t in texts
    )


CORPUS_FLAGS = ("--data_folder", "--covost_folder")


@pytest.mark.parametrize(
    "row",
    [r for r in ROWS if r["Dataset"] not in SYNTHETIC],
    ids=lambda r: r["Hparam_file"],
)
def test_rows_read_a_corpus_sample_in_the_repository(row):
    """A row for a corpus on disk runs from a fresh clone's root, as
    upstream's recipe tests run it: its corpus folders are committed under
    ``tests/samples/`` (``tests/samples/make_samples.py``), each in its
    release's layout."""
    import shlex

    flags = dict(f.split("=", 1) for f in shlex.split(row["test_debug_flags"]))
    folders = [flags[f] for f in CORPUS_FLAGS if f in flags]
    assert folders
    for folder in folders:
        assert folder.startswith("tests/samples/"), folder
        path = os.path.join(ROOT, folder)
        assert os.path.isdir(path) and os.listdir(path), folder


RECIPE_FOLDERS = sorted(
    os.path.dirname(os.path.relpath(p, ROOT))
    for p in glob.glob(os.path.join(ROOT, "recipes", "*", "*", "train.py"))
)


@pytest.mark.parametrize("folder", RECIPE_FOLDERS)
def test_every_recipe_has_extra_requirements(folder):
    """Upstream's layout: ``extra_requirements.txt`` beside ``train.py``,
    one requirement per line (comments allowed)."""
    from packaging.requirements import Requirement

    path = os.path.join(ROOT, folder, "extra_requirements.txt")
    with open(path, encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    requirements = [Requirement(ln) for ln in lines if not ln.startswith("#")]
    assert any(r.name == "speechbrain-meta" for r in requirements)
