"""Task parameters in a SpeechBrain hub model, and their meta-transfer.

A SpeechBrain pretrained model in the hub format (``speechbrain_meta.hub``)
adapts per speaker either all its weights or, so that a speaker's state
stays small, light task parameters inserted into it by SpeechBrain's
``AdaptedModel`` (``speechbrain.nnet.adapters``):

* ``lhuc``: an amplitude per output unit of every linear and convolution
  layer (``speechbrain_meta.task_params.LHUC``);
* ``lora``: a rank-r update of every linear layer
  (``speechbrain.nnet.adapters.LoRA``).

They start at the identity (the model's outputs are unchanged) and are
inserted in place into the interface's own modules, with a fixed seed, so
the same folder and the same kind always give the same model (the task
states of ``AdaptiveASR`` name the model they fit by its weights).

Meta-transfer (``meta_transfer_hub``) learns the task parameters' starting
point over many speakers with the backbone frozen (``MetaTransferBrain``
over the hub model's own loss) and writes a folder that is still the hub
model, plus ``meta_transfer.yaml`` (what to insert, how to adapt) and
``task_params.ckpt`` (the learned start). SpeechBrain's own interfaces
load that folder as the pretrained model it was; ``AdaptiveASR`` inserts
the task parameters, starts them where meta-training left them and adapts
only those. ``search_inner_loop`` meta-transfers with several inner
loops and keeps the one of lowest validation CER.

Authors
 * speechbrain-meta developers 2026
"""

import functools
import os
import shutil

import speechbrain as sb
import torch
import yaml
from speechbrain.nnet.adapters import AdaptedModel, LoRA
from speechbrain.utils.logger import get_logger

from speechbrain_meta.naming import canonical_name
from speechbrain_meta.task_params import LHUC, adapt_module

logger = get_logger(__name__)

TRANSFER_FILE = "meta_transfer.yaml"
TASK_PARAMS_FILE = "task_params.ckpt"

# The kinds of task parameters, as SpeechBrain's AdaptedModel inserts them,
# and the names of the parameters they add.
TASK_PARAM_KINDS = {
    "lhuc": {
        "adapter": {
            "adapter_class": LHUC,
            "all_linear": True,
            "all_conv": True,
        },
        "patterns": ["*task_lhuc"],
        "options": {},
    },
    "lora": {
        "adapter": {"adapter_class": LoRA, "all_linear": True},
        "patterns": ["*adapter_down_proj*", "*adapter_up_proj*"],
        "options": {"rank": 8, "alpha": 8},
    },
}

# The adaptation of task parameters inserted into a hub model that was never
# meta-trained for them: Adam at a rate for parameters that start at the
# identity (the update bound of HUB_ADAPTATION is relative to the start,
# which is zero here), 20 steps in inference mode, validated by 5-fold
# cross-validation over the support on the error rate (abstaining when the
# folds do not agree that it helps).
TASK_PARAMS_ADAPTATION = {
    "rule": "adam",
    "lr": 0.01,
    "steps": 20,
    "mode": "eval",
    "folds": 5,
    "criterion": "error",
}


def task_params_spec(spec):
    """The full description of task parameters to insert.

    Arguments
    ---------
    spec : str or dict
        A kind (``"lhuc"``, ``"lora"``) or a dict with ``kind`` and, for
        ``lora``, ``rank`` and ``alpha``; ``modules``: the model's modules
        to insert into (default: all).

    Returns
    -------
    dict
        ``kind``, ``modules`` (None: all) and the kind's options.

    Example
    -------
    >>> task_params_spec("lora")
    {'kind': 'lora', 'modules': None, 'rank': 8, 'alpha': 8}
    >>> task_params_spec({"kind": "lhuc", "modules": ["encoder"]})
    {'kind': 'lhuc', 'modules': ['encoder']}
    """
    if isinstance(spec, str):
        spec = {"kind": spec}
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in TASK_PARAM_KINDS:
        raise ValueError(
            f"task parameters: kind {kind!r} is not one of "
            f"{sorted(TASK_PARAM_KINDS)}"
        )
    modules = spec.pop("modules", None)
    options = dict(TASK_PARAM_KINDS[kind]["options"])
    unknown = set(spec) - set(options)
    if unknown:
        raise ValueError(f"task parameters ({kind}): unknown {sorted(unknown)}")
    options.update(spec)
    return {
        "kind": kind,
        "modules": None if modules is None else list(modules),
        **options,
    }


def insert_task_params(modules, spec, seed=0):
    """Inserts task parameters into a model's modules, in place.

    Arguments
    ---------
    modules : dict or torch.nn.ModuleDict
        The model's modules (a hub interface's ``mods``); each named one
        gets the task parameters inside it (no wrapper: the interface
        still holds the same modules).
    spec : str or dict
        What to insert (``task_params_spec``).
    seed : int
        The seed of the parameters that start at random (LoRA's down
        projection): the same model for the same folder and spec.

    Returns
    -------
    list of str
        Name patterns of the inserted parameters (what adapts).

    Example
    -------
    >>> model = {"encoder": torch.nn.Sequential(torch.nn.Linear(3, 4))}
    >>> x = torch.randn(2, 3)
    >>> before = model["encoder"](x)
    >>> insert_task_params(model, "lhuc")
    ['*task_lhuc']
    >>> [n for n, _ in model["encoder"].named_parameters()]
    ['0.task_lhuc', '0.pretrained_module.weight', '0.pretrained_module.bias']
    >>> torch.equal(model["encoder"](x), before)
    True
    """
    spec = task_params_spec(spec)
    kind = TASK_PARAM_KINDS[spec["kind"]]
    names = spec["modules"] or list(modules.keys())
    options = {k: v for k, v in spec.items() if k not in ("kind", "modules")}
    adapted_model = functools.partial(
        AdaptedModel, **kind["adapter"], adapter_kwargs=options
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in names:
            if name not in modules:
                raise KeyError(
                    f"task parameters: the model has no module {name!r} "
                    f"(it has {list(modules.keys())})"
                )
            # The wrapper replaces the layers inside the module itself.
            wrapper = adapt_module(modules[name], adapted_model)
            logger.info(
                "Inserted %d %s task parameter layers into %s",
                len(wrapper.replace_layers),
                spec["kind"],
                name,
            )
    return list(kind["patterns"])


def read_meta_transfer(folder):
    """The meta-transfer description of a folder, or None.

    Arguments
    ---------
    folder : str
        A hub-format model folder.

    Returns
    -------
    dict or None
        ``task_params`` (spec), ``adaptation`` (dict), ``state`` (the path
        of the learned task parameters) and ``info``; None when the folder
        has no ``meta_transfer.yaml``.

    Example
    -------
    >>> read_meta_transfer("/nonexistent") is None
    True
    """
    path = os.path.join(str(folder), TRANSFER_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fin:
        data = yaml.safe_load(fin) or {}
    if "task_params" not in data or "adaptation" not in data:
        raise ValueError(f"{path}: needs task_params and adaptation")
    return {
        "task_params": task_params_spec(data["task_params"]),
        "adaptation": dict(data["adaptation"]),
        "state": os.path.join(str(folder), TASK_PARAMS_FILE),
        "info": dict(data.get("info") or {}),
    }


def load_task_params(modules, path):
    """Puts learned task parameters into a model (every one, exactly).

    Arguments
    ---------
    modules : dict or torch.nn.ModuleDict
        The model, task parameters inserted.
    path : str
        A ``task_params.ckpt`` (canonical name to tensor).

    Returns
    -------
    int
        The number of tensors loaded.

    Example
    -------
    >>> import tempfile
    >>> model = {"encoder": torch.nn.Sequential(torch.nn.Linear(3, 4))}
    >>> insert_task_params(model, "lhuc")
    ['*task_lhuc']
    >>> path = os.path.join(tempfile.mkdtemp(), "task_params.ckpt")
    >>> torch.save({"encoder.0.task_lhuc": torch.ones(4)}, path)
    >>> load_task_params(model, path), model["encoder"][0].task_lhuc.sum()
    (1, tensor(4., grad_fn=<SumBackward0>))
    """
    state = torch.load(path, map_location="cpu")
    params = {
        canonical_name(f"{m}.{n}"): p
        for m, module in modules.items()
        for n, p in module.named_parameters()
    }
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise KeyError(
            f"{path}: task parameters this model does not have: {unknown[:5]}"
        )
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))
    return len(state)


def write_meta_transfer(folder, hub_folder, spec, task_state, adaptation, info):
    """Writes a hub folder with meta-learned task parameters beside it.

    Arguments
    ---------
    folder : str
        Where to write (made if needed).
    hub_folder : str
        The pretrained model's folder: its files are copied unchanged.
    spec : str or dict
        The task parameters (``task_params_spec``).
    task_state : dict
        Canonical name to the learned task parameter tensors.
    adaptation : dict
        How ``AdaptiveASR`` adapts them (``Adaptation.describe()``).
    info : dict
        What made it (written in the yaml).

    Returns
    -------
    str
        ``folder``.

    Example
    -------
    >>> import tempfile
    >>> hub = tempfile.mkdtemp()
    >>> open(os.path.join(hub, "hyperparams.yaml"), "w").close()
    >>> out = write_meta_transfer(
    ...     os.path.join(hub, "transferred"), hub, "lhuc",
    ...     {"encoder.0.task_lhuc": torch.zeros(4)},
    ...     {"rule": "sgd", "lr": 0.1, "steps": 3}, {"epochs": 1})
    >>> sorted(os.listdir(out))
    ['hyperparams.yaml', 'meta_transfer.yaml', 'task_params.ckpt']
    >>> read_meta_transfer(out)["task_params"]
    {'kind': 'lhuc', 'modules': None}
    """
    os.makedirs(folder, exist_ok=True)
    for name in sorted(os.listdir(hub_folder)):
        source = os.path.join(hub_folder, name)
        if os.path.isfile(source) and name not in (
            TRANSFER_FILE,
            TASK_PARAMS_FILE,
        ):
            shutil.copyfile(source, os.path.join(folder, name))
    tmp = os.path.join(folder, TASK_PARAMS_FILE + ".tmp")
    torch.save({n: t.detach().cpu() for n, t in task_state.items()}, tmp)
    os.replace(tmp, os.path.join(folder, TASK_PARAMS_FILE))
    description = {
        "task_params": task_params_spec(spec),
        "adaptation": dict(adaptation),
        "info": dict(info),
    }
    tmp = os.path.join(folder, TRANSFER_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fout:
        fout.write(
            "# Task parameters meta-learned for this SpeechBrain model "
            "(speechbrain_meta.hub_transfer):\n# AdaptiveASR inserts them, "
            "loads task_params.ckpt and adapts them as below.\n"
        )
        yaml.safe_dump(description, fout, sort_keys=False)
    os.replace(tmp, os.path.join(folder, TRANSFER_FILE))
    return folder


def hub_dataset(csv_path, brain, sample_rate, replacements=None):
    r"""A SpeechBrain CSV (``wav``, ``wrd``) as a hub Brain's dataset.

    Arguments
    ---------
    csv_path : str
        The manifest.
    brain : HubASR
        The hub Brain (its tokenizer makes the tokens).
    sample_rate : int
        The model's rate (the audio is resampled to it when needed).
    replacements : dict, optional
        For the CSV's ``$`` variables (default: ``$data_root`` is the CSV's
        folder, as for the command line).

    Returns
    -------
    DynamicItemDataset
        Items ``id``, ``sig``, ``wrd``, the brain's token items, and every
        CSV column (for grouping episodes by speaker).

    Example
    -------
    >>> import tempfile
    >>> import soundfile
    >>> folder = tempfile.mkdtemp()
    >>> soundfile.write(os.path.join(folder, "a.wav"), [0.0] * 800, 8000)
    >>> with open(os.path.join(folder, "train.csv"), "w") as fout:
    ...     _ = fout.write("ID,wav,spk_id,wrd\na,$data_root/a.wav,s1,hi\n")
    >>> class Characters:
    ...     def tokenize(self, text):
    ...         return {"tokens": torch.LongTensor([ord(c) for c in text])}
    >>> data = hub_dataset(
    ...     os.path.join(folder, "train.csv"), Characters(), 16000)
    >>> item = data[0]
    >>> item["sig"].shape, item["tokens"].tolist(), item["spk_id"]
    (torch.Size([1600]), [104, 105], 's1')
    """
    from speechbrain_meta.data.checks import read_audio

    data = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path,
        replacements=replacements
        or {"data_root": os.path.dirname(os.path.abspath(csv_path))},
    )
    columns = [k for k in next(iter(data.data.values())) if k != "wav"]

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav, sample_rate)  # resampled and downmixed

    token_keys = sorted(brain.tokenize("0"))

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides(*token_keys)
    def text_pipeline(wrd):
        items = brain.tokenize(wrd)
        for key in token_keys:
            yield items[key]

    data.add_dynamic_item(audio_pipeline)
    data.add_dynamic_item(text_pipeline)
    data.set_output_keys(["id", "sig", *token_keys, *columns])
    return data


SETTINGS_FILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "hparams",
    "hub_meta_transfer.yaml",
)


def meta_transfer_hub(
    hub_folder,
    train_csv,
    valid_csv,
    output_folder,
    overrides=None,
    settings_file=SETTINGS_FILE,
    run_opts=None,
):
    """Meta-learns task parameters of a frozen SpeechBrain hub model.

    The model is loaded by SpeechBrain's own interface (``EncoderASR`` or
    ``EncoderDecoderASR``), the task parameters are inserted
    (``insert_task_params``), and a ``MetaTransferBrain`` over the model's
    own loss (``HubCTC``: CTC; ``HubSeq2Seq``: attention NLL plus the
    searcher's CTC weight) meta-trains their starting point on episodes of
    one group each (a speaker by default): the support adapts the task
    parameters with the inner loop, the query's loss at the adapted ones
    trains their start. Everything else stays frozen. After each epoch the
    validation groups are adapted the same way and their query CER decides
    which epoch's task parameters are kept (every epoch is checkpointed:
    the task parameters, the outer optimiser, the episode sampler; a killed
    run resumes). The settings are ``hparams/hub_meta_transfer.yaml`` of
    this package, with ``overrides``.

    Arguments
    ---------
    hub_folder : str
        The pretrained model's folder (hub format, local).
    train_csv : str
        Training utterances (``ID``, ``wav``, ``wrd`` and the column the
        episodes are grouped by, ``spk_id`` by default).
    valid_csv : str
        Validation utterances (other groups than training's), the same
        columns.
    output_folder : str
        Where the run goes; the result is ``<output_folder>/inference``.
    overrides : dict, optional
        Settings over the settings file (``task_params``, ``inner_lr``,
        ``number_of_epochs``...).
    settings_file : str
        The hyperpyyaml settings.
    run_opts : dict, optional
        SpeechBrain run options (``device``).

    Returns
    -------
    str
        The written folder (``write_meta_transfer``).
    """
    from hyperpyyaml import load_hyperpyyaml

    from speechbrain_meta.brains import MetaTransferBrain, meta_brain_class
    from speechbrain_meta.hub import hub_brain_hparams, load_hub_model

    overrides = dict(overrides or {})
    overrides.setdefault("output_folder", output_folder)
    with open(settings_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    run_opts = dict(run_opts or {"device": "cpu"})
    interface = load_hub_model(
        hub_folder, os.path.join(output_folder, "pretrained"), run_opts
    )
    modules = dict(interface.mods.items())
    spec = task_params_spec(hparams["task_params"])
    patterns = insert_task_params(modules, spec)
    brain_class, brain_hparams = hub_brain_hparams(interface)
    Brain = meta_brain_class(brain_class, MetaTransferBrain)
    inner_loop = hparams["meta_algorithm"].inner_loop
    inner_loop.adapt_params = list(patterns)
    checkpointer = sb.utils.checkpoints.Checkpointer(
        os.path.join(output_folder, "save"),
        {
            "task_params": _TaskParams(modules, patterns),
            "counter": hparams["epoch_counter"],
        },
    )
    brain = Brain(
        modules=modules,
        opt_class=hparams["opt_class"],
        hparams={
            **brain_hparams,
            "max_grad_norm": hparams["max_grad_norm"],
            "grad_accumulation_factor": hparams["grad_accumulation_factor"],
            "eval_inner_steps": hparams["eval_inner_steps"],
            "train_logger": hparams["train_logger"],
            "epoch_counter": hparams["epoch_counter"],
        },
        run_opts=run_opts,
        meta_algorithm=hparams["meta_algorithm"],
        task_params=patterns,
        checkpointer=checkpointer,
    )
    sample_rate = getattr(interface.hparams, "sample_rate", 16000)
    brain.fit(
        hparams["epoch_counter"],
        hub_dataset(train_csv, brain, sample_rate),
        hub_dataset(valid_csv, brain, sample_rate),
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    best = checkpointer.recover_if_possible(min_key="CER")
    logger.info("Meta-transfer: kept %s", best and best.meta)
    info = {
        "pretrained": os.path.abspath(hub_folder),
        "trained_on": os.path.abspath(train_csv),
        "episodes_grouped_by": hparams["train_dataloader_opts"]["episodes"][
            "group_by"
        ],
        "meta_algorithm": type(brain.meta_algorithm).__name__,
        "inner_steps": inner_loop.inner_steps,
        "epochs": hparams["number_of_epochs"],
        "kept": dict(best.meta) if best is not None else None,
    }
    return write_meta_transfer(
        os.path.join(output_folder, "inference"),
        hub_folder,
        spec,
        brain.task_state(),
        hparams["adaptation"],
        info,
    )


def search_inner_loop(
    hub_folder,
    train_csv,
    valid_csv,
    output_folder,
    inner_loops,
    overrides=None,
    settings_file=SETTINGS_FILE,
    run_opts=None,
):
    """Meta-transfer with each of several inner loops; the best one kept.

    The inner loop is what meta-training prepares the task parameters for
    and what ``AdaptiveASR`` adapts them with, so it has to suit the data a
    user adapts on (how many steps, how large). Each candidate (settings
    over the settings file: ``inner_steps``, ``inner_lr``...) is
    meta-transferred by ``meta_transfer_hub`` into its own folder, with the
    same seed and episodes; the one whose kept epoch has the lowest CER on
    the validation speakers (after its own inner loop on their support) is
    chosen, the first on a tie. The search table (candidate, kept epoch,
    CER) goes to ``<output_folder>/inner_loop_search.{json,md}``.

    Arguments
    ---------
    hub_folder : str
        The pretrained model's folder (hub format, local).
    train_csv : str
        Training utterances (as ``meta_transfer_hub``).
    valid_csv : str
        Validation utterances (other groups): the choice is made on them.
    output_folder : str
        One folder per candidate under it, and the search table.
    inner_loops : list of dict
        The candidates (at least one), each a dict of settings.
    overrides : dict, optional
        Settings every candidate shares (a candidate's own win).
    settings_file : str
        The hyperpyyaml settings.
    run_opts : dict, optional
        SpeechBrain run options (``device``).

    Returns
    -------
    tuple
        ``(folder, rows)``: the chosen candidate's written folder and one
        row per candidate (``candidate``, ``settings``, ``CER``,
        ``updates``, ``folder``, ``chosen``).

    Example
    -------
    >>> search_inner_loop("hub", "train.csv", "dev.csv", "out", [])
    Traceback (most recent call last):
    ...
    ValueError: search_inner_loop: no inner loop to try
    """
    from speechbrain_meta.layered_yaml import layer_keys
    from speechbrain_meta.reports import markdown_table, write_json

    if not inner_loops:
        raise ValueError("search_inner_loop: no inner loop to try")
    known = set(layer_keys(settings_file))
    rows = []
    for settings in inner_loops:
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(
                f"inner loop {settings}: {unknown} not settings of "
                f"{settings_file}"
            )
        name = "_".join(f"{k}{v}" for k, v in sorted(settings.items()))
        name = name or "default"
        folder = meta_transfer_hub(
            hub_folder,
            train_csv,
            valid_csv,
            os.path.join(output_folder, name),
            overrides={**(overrides or {}), **settings},
            settings_file=settings_file,
            run_opts=run_opts,
        )
        kept = read_meta_transfer(folder)["info"].get("kept") or {}
        rows.append(
            {
                "candidate": name,
                "settings": dict(settings),
                "CER": float(kept.get("CER", float("inf"))),
                "updates": kept.get("updates"),
                "folder": folder,
            }
        )
    best = min(range(len(rows)), key=lambda i: rows[i]["CER"])
    for i, row in enumerate(rows):
        row["chosen"] = i == best
    write_json(os.path.join(output_folder, "inner_loop_search.json"), rows)
    table = markdown_table(
        ["inner loop", "validation CER % (kept epoch)", "updates", "chosen"],
        [
            [r["candidate"], f"{r['CER']:.2f}", r["updates"], "x" * r["chosen"]]
            for r in rows
        ],
    )
    with open(
        os.path.join(output_folder, "inner_loop_search.md"),
        "w",
        encoding="utf-8",
    ) as fout:
        fout.write(table)
    logger.info("Meta-transfer inner loop chosen: %s", rows[best]["candidate"])
    return rows[best]["folder"], rows


@sb.utils.checkpoints.register_checkpoint_hooks
class _TaskParams:
    """The task parameters of a model, as a checkpoint recoverable (the
    frozen backbone is the pretrained model's: it is not saved again).
    """

    def __init__(self, modules, patterns):
        from speechbrain_meta.naming import matches

        self.modules = modules
        self.params = {
            canonical_name(f"{m}.{n}"): p
            for m, module in modules.items()
            for n, p in module.named_parameters()
            if matches(n, patterns)
        }

    @sb.utils.checkpoints.mark_as_saver
    def save(self, path):
        torch.save({n: p.detach().cpu() for n, p in self.params.items()}, path)

    @sb.utils.checkpoints.mark_as_loader
    def load(self, path, end_of_epoch=True):
        del end_of_epoch
        load_task_params(self.modules, path)
