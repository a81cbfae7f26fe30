"""Every recipe's hparams file as one file that loads on its own.

The recipes keep a shared ``hparams/models/common.yaml`` and one short file
per method, and reach the meta algorithms' fragments by ``!include:``
through the repository. ``speechbrain_meta.layered_yaml.standalone_yaml``
writes a method's file as upstream's recipes are written: one file, the
fragments in place. Here, for every hparams file of every recipe: the
standalone file holds no ``!include:`` and resolves to exactly what the
recipe's own loading gives (the same document, node by node, tags
included); and one of them, copied alone to an empty folder, loads with
``load_hyperpyyaml`` and builds its algorithm with a command-line override
reaching the fragment's inner loop.
"""

import glob
import os
import re
import sys
from io import StringIO

import pytest
import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

from speechbrain_meta.layered_yaml import (
    main,
    resolve_layered_yaml,
    standalone_yaml,
)
from speechbrain_meta.recipe import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "recipes", "*", "*", "train.py")))


def _common_files(script):
    """The shared files a recipe's ``train.py`` layers its methods over."""
    name = "recipe_" + os.path.relpath(script, ROOT).replace("/", "_")[:-3]
    sys.path.insert(0, os.path.dirname(script))  # its sibling modules
    try:
        return load_script(script, name).COMMON
    finally:
        sys.path.remove(os.path.dirname(script))


FILES = [
    (script, path)
    for script in SCRIPTS
    for path in sorted(
        glob.glob(os.path.join(os.path.dirname(script), "hparams", "*.yaml"))
    )
]


def _tree(node):
    """A yaml node as nested (tag, value) pairs, comments left out."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, dict):
        return tag, {str(k): _tree(v) for k, v in node.items()}
    if isinstance(node, list):
        return tag, [_tree(v) for v in node]
    return tag, str(node)


def _placeholders(text):
    return {k: "/data" for k in re.findall(r"^(\w+): !PLACEHOLDER", text, re.M)}


@pytest.mark.parametrize(
    "script,path", FILES, ids=[os.path.relpath(p, ROOT) for _, p in FILES]
)
def test_standalone_file_resolves_as_the_recipe_loads_it(script, path):
    common = _common_files(script)
    text = standalone_yaml(path, common)
    assert not re.search(r"^[^#\n]*!include:", text, re.M)
    overrides = _placeholders(text)
    layered = resolve_layered_yaml(path, common, dict(overrides))
    alone = resolve_references(StringIO(text), dict(overrides)).getvalue()
    yaml = ruamel.yaml.YAML()
    assert _tree(yaml.load(alone)) == _tree(yaml.load(layered))


def test_a_standalone_file_loads_alone_and_takes_overrides(tmp_path, capsys):
    """SynthTones' MAML file, written by the command line to an empty
    folder and loaded from there: ``inner_lr`` and ``inner_steps`` given on
    the command line reach the fragment's inner loop."""
    recipe = os.path.join(ROOT, "recipes", "SynthTones", "meta_asr")
    main([os.path.join(recipe, "hparams", "maml.yaml")])
    path = tmp_path / "maml.yaml"
    path.write_text(capsys.readouterr().out)
    overrides = dict(_placeholders(path.read_text()), inner_lr=0.37)
    overrides["inner_steps"] = 4
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with open(path) as f:
            hparams = load_hyperpyyaml(f, overrides)
    finally:
        os.chdir(cwd)
    inner_loop = hparams["meta_algorithm"].inner_loop
    assert inner_loop.update_rule.lr == 0.37 and inner_loop.inner_steps == 4
    assert not inner_loop.first_order  # MAML's fragment: second order
