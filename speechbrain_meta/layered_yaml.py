"""A method's hparams file over the file its recipe's methods share.

A recipe that compares many methods on one model, corpus, budget and
protocol keeps what they share in one file (``hparams/models/common.yaml``)
and, per method, a short file with only what the method changes::

    python train.py hparams/maml.yaml --seed=7

``load_layered_hparams`` loads the common file with the method file's keys
as hyperpyyaml overrides, then the command line's on top. Everything works
as in one file: ``!ref`` in the method file may name any key of the common
file and the other way round, ``!include:`` paths are relative to the
method file, a key the method sets replaces the common one (its position in
the common file, and so the order in which objects are created, is kept;
new keys come last), and an override of a key that neither file has is an
error, as with ``load_hyperpyyaml``.

Authors
 * speechbrain-meta developers 2026
"""

import os
import re
from io import StringIO

import ruamel.yaml
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml, resolve_references
from hyperpyyaml.core import recursive_update
from speechbrain.utils.distributed import if_main_process


def _yaml():
    return ruamel.yaml.YAML()


def _read(path):
    with open(path, encoding="utf-8") as fin:
        return _yaml().load(fin) or ruamel.yaml.comments.CommentedMap()


def layer_keys(hparams_file):
    r"""The top-level keys a yaml file sets, its tags left unresolved.

    Read for a method's hparams file (what it overrides) and for a hub
    model's ``hyperparams.yaml`` (which interface loads it); nothing is
    instantiated.

    Arguments
    ---------
    hparams_file : str
        The yaml file.

    Returns
    -------
    list of str

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.yaml")
    >>> with open(path, "w") as f:
    ...     _ = f.write("method: maml\nlr: !ref <base_lr> * 2\n")
    >>> layer_keys(path)
    ['method', 'lr']
    """
    return [str(k) for k in _read(hparams_file)]


def _absolute_includes(node, folder):
    """Makes the ``!include:`` paths under a node absolute (from ``folder``)."""
    children = []
    if isinstance(node, dict):
        children = list(node.values())
    elif isinstance(node, list):
        children = list(node)
    for child in children:
        _absolute_includes(child, folder)
    tag = getattr(getattr(node, "tag", None), "value", None) or ""
    if tag.startswith("!include:"):
        path = tag[len("!include:") :]
        if not os.path.isabs(path):
            path = os.path.normpath(os.path.join(folder, path))
            node.yaml_set_ctag(
                ruamel.yaml.comments.Tag(suffix=f"!include:{path}")
            )


def _tag(node):
    return getattr(getattr(node, "tag", None), "value", None)


def _layer_over(base, layer):
    """Puts the layer's keys over the base document, in place.

    A key the base has keeps its position; an untagged mapping is merged
    key by key, anything else (a value, a list, a tagged ``!new:`` or
    ``!include:`` node) is replaced whole.
    """
    for key, value in layer.items():
        old = base.get(key)
        if (
            isinstance(value, dict)
            and isinstance(old, dict)
            and not _tag(value)
            and not _tag(old)
        ):
            _layer_over(old, value)
        else:
            base[key] = value


def _common_files(common_file):
    """The shared files, first the base: one path, or a list of paths."""
    if isinstance(common_file, (str, os.PathLike)):
        return [common_file]
    return list(common_file)


def _layered_document(hparams_file, common_file, overrides=None):
    """The common file(s) with the method's keys over them, unresolved,
    ``!include:`` paths made absolute (see ``resolve_layered_yaml``).
    """
    common = None
    for path in _common_files(common_file):
        shared = _read(path)
        _absolute_includes(shared, os.path.dirname(os.path.abspath(path)))
        if common is None:
            common = shared
        else:
            _layer_over(common, shared)
    layer = _read(hparams_file)
    _absolute_includes(layer, os.path.dirname(os.path.abspath(hparams_file)))
    if isinstance(overrides, str):
        overrides = _yaml().load(overrides)
    if overrides:
        unknown = sorted(set(overrides) - set(layer) - set(common))
        if unknown:
            raise KeyError(
                f"Overrides {unknown} are keys of neither {hparams_file} nor "
                f"{_common_files(common_file)}"
            )
        recursive_update(layer, overrides, must_match=False)
    _layer_over(common, layer)
    return common


def _dump(document):
    text = StringIO()
    _yaml().dump(document, text)
    return text.getvalue()


def resolve_layered_yaml(hparams_file, common_file, overrides=None):
    """The merged document, every reference resolved, as yaml text.

    Arguments
    ---------
    hparams_file : str
        The method's file.
    common_file : str or list of str
        The file the recipe's methods share; or a list of files, each
        layered over the one before it (a recipe's model over the corpus,
        budget and protocol another recipe of the corpus set).
    overrides : str or dict, optional
        Command-line overrides (yaml text or a dict), merged into the
        method's keys as ``load_hyperpyyaml`` merges overrides.

    Returns
    -------
    str
        The yaml text (what ``load_hyperpyyaml`` of one file would see);
        it is what a run saves as its ``hyperparams.yaml``.
    """
    document = _layered_document(hparams_file, common_file, overrides)
    return resolve_references(StringIO(_dump(document))).getvalue()


_REFERENCE = re.compile(r"<([^<>\[\]]+)")


def _nest_references(node, prefix):
    """Makes the ``!ref``/``!copy`` references under a node, written
    relative to the root of the file the node came from, relative to the
    key ``prefix`` (``<a>`` becomes ``<prefix[a]>``), in place.
    """
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    else:
        children = []
    for key, child in children:
        tag = _tag(child) or ""
        if tag in ("!ref", "!copy"):
            value = _REFERENCE.sub(lambda m: f"<{prefix}[{m[1]}]", str(child))
            tagged = ruamel.yaml.comments.TaggedScalar(value, tag=tag)
            node[key] = tagged
        else:
            _nest_references(child, prefix)


def _inline_includes(node, key_path):
    """Replaces every ``!include:`` node under ``node`` (``key_path``: its
    reference in the document, e.g. ``meta``) by the included file, its
    references nested under the key and the node's mapping over it.
    """
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    else:
        return node
    for key, child in children:
        path = str(key) if not key_path else f"{key_path}[{key}]"
        node[key] = _inline_includes(child, path)
    tag = _tag(node) or ""
    if not tag.startswith("!include:"):
        return node
    filename = tag[len("!include:") :]
    included = _read(filename)
    _absolute_includes(included, os.path.dirname(os.path.abspath(filename)))
    included = _inline_includes(included, "")
    _nest_references(included, key_path)
    recursive_update(included, dict(node), must_match=False)
    return included


def standalone_yaml(hparams_file, common_file):
    r"""The layered hparams as one file that ``load_hyperpyyaml`` loads on
    its own, references kept.

    The common file(s) with the method's keys over them (as
    ``load_layered_hparams`` merges them), and each ``!include:`` fragment
    (``speechbrain_meta/hparams/*.yaml``) written in place: its
    references made relative to where it is put (``<inner_steps>`` in the
    fragment under ``meta:`` becomes ``<meta[inner_steps]>``), the
    include's mapping over its keys. Nothing outside the file is read
    when it is loaded, so it can go where the package is only installed
    (a recipe submitted upstream, a copy in a user's project); overrides
    of any key still reach every ``!ref`` to it.

    Arguments
    ---------
    hparams_file : str
        The method's file.
    common_file : str or list of str
        The file(s) the recipe's methods share (see
        ``resolve_layered_yaml``).

    Returns
    -------
    str
        The yaml text.

    Example
    -------
    >>> import tempfile
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "fragment.yaml"), "w") as f:
    ...     _ = f.write("steps: 1\nplan: !ref <steps> * 2\n")
    >>> with open(os.path.join(folder, "common.yaml"), "w") as f:
    ...     _ = f.write("base_lr: 0.1\nmeta: !include:fragment.yaml\n"
    ...                 "    steps: !ref <steps>\nsteps: 3\n")
    >>> with open(os.path.join(folder, "maml.yaml"), "w") as f:
    ...     _ = f.write("steps: 5\n")
    >>> text = standalone_yaml(
    ...     os.path.join(folder, "maml.yaml"),
    ...     os.path.join(folder, "common.yaml"))
    >>> print(text.strip())
    base_lr: 0.1
    meta:
      steps: !ref <steps>
      plan: !ref <meta[steps]> * 2
    steps: 5
    >>> load_hyperpyyaml(text, {"steps": 4})["meta"]
    {'steps': 4, 'plan': 8}
    """
    document = _layered_document(hparams_file, common_file)
    return _dump(_inline_includes(document, ""))


def layered_values(hparams_file, common_file, keys, overrides=None):
    r"""Plain values of some keys of the layered hparams, nothing built.

    For what a recipe must know before it loads its hparams: a data
    preparation whose result becomes an override (the units it counts).

    Arguments
    ---------
    hparams_file : str
        The method's file.
    common_file : str or list of str
        The file(s) the recipe's methods share (see
        ``resolve_layered_yaml``).
    keys : iterable of str
        The keys wanted; their values must be plain yaml (numbers,
        strings, lists, mappings) once references are resolved.
    overrides : str or dict, optional
        Command-line overrides.

    Returns
    -------
    dict
        Key to value (Python's own types).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "common.yaml"), "w") as f:
    ...     _ = f.write("name: x\nout: !ref results/<name>\n"
    ...                 "model: !new:collections.Counter\n")
    >>> with open(os.path.join(folder, "m.yaml"), "w") as f:
    ...     _ = f.write("name: m\n")
    >>> layered_values(
    ...     os.path.join(folder, "m.yaml"),
    ...     os.path.join(folder, "common.yaml"), ["out"], "name: y")
    {'out': 'results/y'}
    """
    text = resolve_layered_yaml(hparams_file, common_file, overrides)
    document = _yaml().load(text)
    return {key: _plain(document[key], key) for key in keys}


def _plain(value, key):
    if _tag(value):
        raise ValueError(f"{key}: not a plain value ({_tag(value)})")
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, key) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def load_layered_hparams(hparams_file, common_file, overrides=None):
    r"""Loads a method's hparams over the common file of its recipe.

    Arguments
    ---------
    hparams_file : str
        The method's file (only what the method changes).
    common_file : str or list of str
        The file(s) the recipe's methods share (see
        ``resolve_layered_yaml``).
    overrides : str or dict, optional
        Command-line overrides (yaml text or a dict), applied last.

    Returns
    -------
    tuple
        ``(hparams, yaml_text)``: the loaded hparams and the resolved yaml
        (see ``resolve_layered_yaml``).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "common.yaml"), "w") as f:
    ...     _ = f.write("method: !PLACEHOLDER\nbase_lr: 0.1\n"
    ...                 "lr: !ref <base_lr>\nseed: 1\n")
    >>> with open(os.path.join(folder, "maml.yaml"), "w") as f:
    ...     _ = f.write("method: maml\nlr: !ref <base_lr> * 2\n")
    >>> hparams, _ = load_layered_hparams(
    ...     os.path.join(folder, "maml.yaml"),
    ...     os.path.join(folder, "common.yaml"), "seed: 7")
    >>> hparams["method"], hparams["lr"], hparams["seed"]
    ('maml', 0.2, 7)

    A second recipe of the corpus layers its model over the same file:

    >>> with open(os.path.join(folder, "model.yaml"), "w") as f:
    ...     _ = f.write("base_lr: 0.5\nmodel: attention\n")
    >>> hparams, _ = load_layered_hparams(
    ...     os.path.join(folder, "maml.yaml"),
    ...     [os.path.join(folder, n) for n in ("common.yaml", "model.yaml")])
    >>> hparams["lr"], hparams["model"]
    (1.0, 'attention')
    """
    text = resolve_layered_yaml(hparams_file, common_file, overrides)
    return load_hyperpyyaml(text), text


def layered_experiment(hparams_file, common_file, overrides=None):
    """Loads the layered hparams and creates the experiment folder.

    SpeechBrain's ``create_experiment_directory`` (log, environment), with
    the merged configuration saved as ``hyperparams.yaml``, as one file
    would have given it.

    Arguments
    ---------
    hparams_file : str
        The method's file.
    common_file : str or list of str
        The file(s) the recipe's methods share (see
        ``resolve_layered_yaml``).
    overrides : str or dict, optional
        Command-line overrides.

    Returns
    -------
    dict
        The hparams (``output_folder`` must be among them).
    """
    hparams, text = load_layered_hparams(hparams_file, common_file, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"]
    )
    if if_main_process():
        path = os.path.join(hparams["output_folder"], "hyperparams.yaml")
        with open(path, "w", encoding="utf-8") as fout:
            fout.write(text)
    return hparams


def main(argv=None):
    r"""``python -m speechbrain_meta.layered_yaml METHOD.yaml [--common
    FILE ...] [--output OUT.yaml]``: writes ``standalone_yaml`` of a
    method's file (to standard output without ``--output``).

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default: the command line's).

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(folder, "models"))
    >>> with open(os.path.join(folder, "models", "common.yaml"), "w") as f:
    ...     _ = f.write("lr: 0.1\nseed: 1\n")
    >>> with open(os.path.join(folder, "maml.yaml"), "w") as f:
    ...     _ = f.write("lr: 0.2\n")
    >>> main([os.path.join(folder, "maml.yaml")])
    lr: 0.2
    seed: 1
    """
    import argparse

    parser = argparse.ArgumentParser(
        description="Writes a method's hparams file, layered over the file(s)"
        " its recipe's methods share, as one file that load_hyperpyyaml"
        " loads on its own (fragments written in place, references kept)."
    )
    parser.add_argument("hparams_file", help="the method's file")
    parser.add_argument(
        "--common",
        nargs="+",
        help="the shared file(s), base first (default: models/common.yaml "
        "beside the method's file)",
    )
    parser.add_argument("--output", help="where to write (default: stdout)")
    args = parser.parse_args(argv)
    common = args.common or os.path.join(
        os.path.dirname(os.path.abspath(args.hparams_file)),
        "models",
        "common.yaml",
    )
    text = standalone_yaml(args.hparams_file, common)
    if args.output is None:
        print(text, end="")
    else:
        with open(args.output, "w", encoding="utf-8") as fout:
            fout.write(text)


if __name__ == "__main__":
    main()
