"""The steps the meta-ASR recipes share.

A recipe's ``train.py`` prepares its corpus and manifests, reads its
hparams, and takes these steps in order (``recipes/*/.../train.py``):

1. ``load_joint_model``: the warm start of the meta-learners and the model
   the baselines adapt, trained first (``joint.yaml``) if it is missing;
2. ``speechbrain_meta.task_params.insert_adapters`` for the methods with
   task parameters or adapters;
3. ``train_method``: meta-training, joint training, or none;
4. ``choose_adaptations``: each method's adaptation settings, chosen on the
   meta-dev tasks;
5. ``speechbrain_meta.inference.export_run``: the model for
   ``AdaptiveASR``, adapting the ``default`` way;
6. ``few_shot_evaluation``: the few-shot protocol on the evaluation sets,
   the ``default`` adaptation through the exported model (4 to 6 are
   ``evaluate_and_export``).

Every trained model is selected by the same criterion: CER on meta-dev
episodes after adapting with its own rule.

Authors
 * speechbrain-meta developers 2026
"""

import glob
import importlib.util
import os

import speechbrain as sb
import torch
import yaml
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_meta.adaptation import Adaptation
from speechbrain_meta.asr import CTCASR
from speechbrain_meta.distributed import world
from speechbrain_meta.evaluation import (
    FewShotProtocol,
    cached_results,
    candidate_adaptations,
    select_adaptation,
    write_results,
)
from speechbrain_meta.inference import AdaptiveASR, export_run
from speechbrain_meta.interpret import learned_rates, write_rate_report
from speechbrain_meta.layered_yaml import layer_keys
from speechbrain_meta.translation import ST
from speechbrain_meta.unsupervised import unsupervised_params

logger = get_logger(__name__)

# The budgets measured through the exported model (``AdaptiveASR``, the
# path a user calls) when there is one: the default adaptation, and the
# adaptation without transcripts (also per utterance: ``unsupervised_each``).
INTERFACE_BUDGETS = ("default", "unsupervised", "unsupervised_each")

# Settings no method file changes (the shared file's defaults), and the
# run's own folders: never handed on to the joint model's run.
RUN_KEYS = {
    "output_folder", "save_folder", "train_log", "run_few_shot",
    "opt_class", "meta_algorithm", "meta_brain_class",
}  # fmt: skip


class WarmStart:
    """Marks the joint model's checkpoint the meta-learners start from.

    Put in front of a recipe's Brain (one built on ``ErrorRateBrain``,
    whose validation checkpoints record ``checkpoint_meta``): the joint
    run's validation checkpoint of epoch ``warm_start_epoch`` is kept for
    good and marked ``warm_start``; the meta-learners start there and
    meta-train for the remaining epochs (the same number of updates).

    Example
    -------
    >>> issubclass(WarmStartASR, WarmStart)
    True
    """

    def checkpoint_meta(self, stats, epoch):
        """Validation checkpoint meta: the meta-learners' starting point.

        Arguments
        ---------
        stats : dict
            Validation statistics.
        epoch : int
            The epoch.

        Returns
        -------
        dict
        """
        meta = super().checkpoint_meta(stats, epoch)
        warm_start = getattr(self.hparams, "warm_start_epoch", None)
        if self.hparams.training == "joint" and epoch == warm_start:
            meta.update(warm_start=True, keep=True)
        return meta


class WarmStartASR(WarmStart, CTCASR):
    """The CTC recogniser whose joint model marks the meta-learners' start.

    Example
    -------
    >>> issubclass(WarmStartASR, CTCASR)
    True
    """


class WarmStartST(WarmStart, ST):
    """``speechbrain_meta.translation.ST`` with the joint model's warm-start
    checkpoint marked: the Brain of the speech-translation recipes.

    Example
    -------
    >>> issubclass(WarmStartST, ST)
    True
    """


def load_script(path, name):
    r"""A recipe's script, loaded as a module under a name of its own.

    Recipes share file names (every one has a ``train.py``): a script that
    builds on another recipe's, or a job that runs several, loads each
    under a name that no other shadows.

    Arguments
    ---------
    path : str
        The script.
    name : str
        The module's name.

    Returns
    -------
    module

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.py")
    >>> with open(path, "w") as f:
    ...     _ = f.write("COMMON = 'common.yaml'\n")
    >>> load_script(path, "my_recipe_train").COMMON
    'common.yaml'
    """
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_overrides(overrides):
    r"""Command-line overrides as a dict (a copy).

    Arguments
    ---------
    overrides : dict or str or None
        Yaml text (as ``sb.parse_arguments`` returns it) or a dict.

    Returns
    -------
    dict

    Example
    -------
    >>> parse_overrides("seed: 3\nlr: 0.1")
    {'seed': 3, 'lr': 0.1}
    >>> parse_overrides(None)
    {}
    """
    if isinstance(overrides, dict):
        return dict(overrides)
    return yaml.safe_load(overrides or "") or {}


def joint_overrides(overrides, joint_folder, hparams_dir, task_keys=()):
    """The overrides of a run that its joint model's run shares.

    A key some method file of ``hparams_dir`` sets (``lr``, ``inner_lr``,
    ``meta``...) is the method's own setting, not handed on, unless it is
    one of ``task_keys``: settings that define the tasks, which a variant's
    method files share (Common Voice's ``accents``).

    Arguments
    ---------
    overrides : dict or str
        The run's overrides (yaml text or a dict).
    joint_folder : str
        The joint model's output folder.
    hparams_dir : str
        The recipe's folder of method files.
    task_keys : iterable of str
        Keys always handed on.

    Returns
    -------
    dict

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "maml.yaml"), "w") as f:
    ...     _ = f.write("inner_lr: 0.1")
    >>> joint_overrides({"seed": 3, "inner_lr": 0.5}, "joint/3", folder)
    {'seed': 3, 'output_folder': 'joint/3', 'run_few_shot': False}
    >>> joint_overrides({"inner_lr": 0.5}, "j", folder, task_keys=["inner_lr"])
    {'inner_lr': 0.5, 'output_folder': 'j', 'run_few_shot': False}
    """
    parsed = parse_overrides(overrides)
    method_files = sorted(glob.glob(os.path.join(hparams_dir, "*.yaml")))
    method_keys = RUN_KEYS.union(*(layer_keys(f) for f in method_files))
    method_keys -= set(task_keys)
    shared = {k: v for k, v in parsed.items() if k not in method_keys}
    shared.update(output_folder=joint_folder, run_few_shot=False)
    return shared


def load_joint_model(hparams, train_joint):
    """Loads the joint model of ``warm_start_epoch`` into the modules.

    Meta-learners (``training: meta``) take the checkpoint marked
    ``warm_start``; the baselines built on the joint model its selected
    one. Loading goes through SpeechBrain's ``Pretrainer`` from the local
    checkpoint.

    Arguments
    ---------
    hparams : dict
        The run's hparams (``joint_folder``, ``training``, ``modules``,
        ``save_folder``, ``output_folder``).
    train_joint : callable
        Trains the joint model (``train_joint()``) when its folder holds
        no checkpoint yet.

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
        The checkpoint loaded.
    """
    joint_save = os.path.join(hparams["joint_folder"], "save")
    checkpointer = sb.utils.checkpoints.Checkpointer(joint_save)

    def find():
        if hparams["training"] == "meta":
            # Same total number of updates as joint training.
            return checkpointer.find_checkpoint(
                min_key="CER", ckpt_predicate=lambda c: c.meta.get("warm_start")
            )
        return selected_checkpoint(hparams, checkpointer)

    if find() is None:
        logger.info("No joint model in %s: training it first", joint_save)
        train_joint()
        # The joint run sent the log to its own folder: back to this one.
        sb.utils.logger.setup_logging(
            sb.core.DEFAULT_LOG_CONFIG,
            {
                "handlers": {
                    "file_handler": {
                        "filename": os.path.join(
                            hparams["output_folder"], "log.txt"
                        )
                    }
                }
            },
        )
        logger.info("Back from training the joint model")
    ckpt = find()
    if ckpt is None:
        raise RuntimeError(f"No joint-model checkpoint in {joint_save}")
    pretrainer = sb.utils.parameter_transfer.Pretrainer(
        collect_in=os.path.join(hparams["save_folder"], "joint_init"),
        loadables={k: hparams["modules"][k] for k in hparams["modules"]},
        paths={k: str(ckpt.paramfiles[k]) for k in hparams["modules"]},
    )
    # Collected (linked) by the main process alone, as SpeechBrain's recipes
    # do: two torchrun ranks linking into one folder raced.
    run_on_main(pretrainer.collect_files)
    pretrainer.load_collected()
    logger.info("Initialised from the joint model %s", ckpt.path)
    return ckpt


def fit_input_normalization(hparams, run_opts, dataset, batches=20):
    """Global feature statistics for an untrained model (``scratch``).

    Training never happens for this model, but its ``InputNormalization``
    needs the statistics any trained model would have: one pass over
    ``batches`` meta-train batches, nothing else is updated.

    Arguments
    ---------
    hparams : dict
        ``modules["normalize"]``, ``compute_features``,
        ``joint_batch_size``.
    run_opts : dict
        SpeechBrain's run options (``device``).
    dataset : DynamicItemDataset
        Meta-train utterances (``sig``).
    batches : int
        Batches read.
    """
    device = run_opts.get("device", "cpu")
    normalize = hparams["modules"]["normalize"].to(device)
    loader = sb.dataio.dataloader.make_dataloader(
        dataset, batch_size=hparams["joint_batch_size"], shuffle=False
    )
    normalize.train()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i == batches:
                break
            wavs, wav_lens = batch.sig
            feats = hparams["compute_features"](wavs.to(device))
            normalize(feats, wav_lens.to(device))
    normalize.eval()


def train_method(make_brain, hparams, run_opts, datasets):
    """Trains the model as the method says (meta, joint or not at all).

    Arguments
    ---------
    make_brain : callable
        ``make_brain(**hparam_overrides)`` returns the method's brain.
    hparams : dict
        The run's hparams (``training``, ``init_from_joint``, the budget:
        ``episodes_per_epoch``, ``grad_accumulation_factor``,
        ``joint_batch_size``, ``seed``; the loaders' options).
    run_opts : dict
        SpeechBrain's run options.
    datasets : dict
        ``train`` and ``dev``.

    Returns
    -------
    MetaBrain or None
        The trained brain (None for ``training: none``).
    """
    training = hparams["training"]
    if training == "none":
        if not hparams["init_from_joint"]:
            fit_input_normalization(hparams, run_opts, datasets["train"])
        return None
    if training == "joint":
        # Multitask training on pooled batches (plain batches train as in
        # sb.Brain): the same number of updates and utterances per update
        # as meta-training.
        brain = make_brain(grad_accumulation_factor=1)
        updates_per_epoch = (
            hparams["episodes_per_epoch"] // hparams["grad_accumulation_factor"]
        )
        batch_size = hparams["joint_batch_size"]
        # Under DDP each rank takes its share of the samples and batches
        # of batch_size: as many updates as one process makes.
        _, world_size = world()
        sampler = sb.dataio.sampler.ReproducibleRandomSampler(
            datasets["train"],
            seed=hparams["seed"],
            replacement=False,
            num_samples=updates_per_epoch * batch_size * world_size,
        )
        train_kwargs = {
            "batch_size": batch_size,
            "sampler": sampler,
            "drop_last": True,
        }
    elif training == "meta":
        brain = make_brain()
        train_kwargs = hparams["train_dataloader_opts"]
    else:
        raise ValueError(f"Unknown training {training!r}: meta|joint|none")
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["dev"],
        train_loader_kwargs=train_kwargs,
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    if training == "joint" and hparams.get("average_checkpoints", 1) > 1:
        average_best_checkpoints(brain, hparams, datasets["dev"])
    return brain


def average_best_checkpoints(brain, hparams, dev_data):
    """Averages the weights of the best checkpoints into the joint model.

    SpeechBrain's checkpoint averaging (``average_checkpoints``, as its
    Transformer recipes do): the ``average_checkpoints`` checkpoints of
    lowest validation CER (the ``warm_start`` one aside) are averaged, the
    normalisation statistics taken from the best, the epoch counter left
    at the end of training; the averaged model is
    scored on the validation episodes and saved as a checkpoint marked
    ``averaged``, which ``selected_checkpoint`` then gives. Done once: a
    rerun finds it.

    Arguments
    ---------
    brain : MetaBrain
        The joint model after training (its checkpointer).
    hparams : dict
        ``average_checkpoints``, ``valid_dataloader_opts``,
        ``epoch_counter``.
    dev_data : DynamicItemDataset
        The validation utterances.
    """
    checkpointer = brain.checkpointer
    if checkpointer.find_checkpoint(ckpt_predicate=_is_averaged) is not None:
        return
    best = checkpointer.find_checkpoints(
        min_key="CER",
        max_num_checkpoints=hparams["average_checkpoints"],
        ckpt_predicate=lambda c: not c.meta.get("keep"),
    )
    if len(best) < 2:
        return
    # The best checkpoint's normalisation statistics, the epoch counter
    # left at the end of training (a rerun must not train again).
    counter = hparams["epoch_counter"]
    final_epoch = counter.current
    checkpointer.recover_if_possible(min_key="CER")
    counter.current = final_epoch
    averaged = [
        key
        for key, module in brain.modules.items()
        if list(module.parameters()) and key in best[0].paramfiles
    ]
    for key in averaged:
        state = sb.utils.checkpoints.average_checkpoints(best, key)
        brain.modules[key].load_state_dict(state)
    # Brain.evaluate loads the latest checkpoint first: the averaged weights
    # are saved, scored from there, and saved again with their score.
    unscored = checkpointer.save_checkpoint(meta={"averaging": True})
    brain.evaluate(
        dev_data,
        progressbar=False,
        test_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    cer = brain.test_stats["CER"]
    logger.info(
        "Averaged %s of the %d best checkpoints (CER %s): validation CER %.2f",
        ", ".join(averaged),
        len(best),
        ", ".join(f"{c.meta['CER']:.2f}" for c in best),
        cer,
    )
    checkpointer.save_checkpoint(
        meta={
            "CER": cer,
            "averaged": len(best),
            "averaged_from": [c.path.name for c in best],
            "updates": brain.optimizer_step,
        }
    )
    checkpointer.delete_checkpoints(
        num_to_keep=0, ckpt_predicate=lambda c: c.path == unscored.path
    )


def recover_selected(hparams):
    """Loads the run's ``selected_checkpoint`` into its recoverables.

    Arguments
    ---------
    hparams : dict
        ``average_checkpoints``, ``checkpointer``.

    Returns
    -------
    Checkpoint or None
        What was loaded.
    """
    checkpoint = selected_checkpoint(hparams)
    if checkpoint is not None:
        hparams["checkpointer"].load_checkpoint(checkpoint)
    return checkpoint


def _is_averaged(checkpoint):
    return bool(checkpoint.meta.get("averaged"))


def selected_checkpoint(hparams, checkpointer=None):
    """The checkpoint a run evaluates and builds on.

    The joint model's averaged checkpoint when ``average_checkpoints`` > 1
    (``average_best_checkpoints``; only a joint run makes one), else the
    lowest validation CER.

    Arguments
    ---------
    hparams : dict
        ``average_checkpoints``, ``checkpointer``.
    checkpointer : Checkpointer, optional
        Another run's (default: ``hparams["checkpointer"]``).

    Returns
    -------
    Checkpoint or None
    """
    checkpointer = checkpointer or hparams["checkpointer"]
    if hparams.get("average_checkpoints", 1) > 1:
        averaged = checkpointer.find_checkpoint(ckpt_predicate=_is_averaged)
        if averaged is not None:
            return averaged
    return checkpointer.find_checkpoint(min_key="CER")


def search_protocol(hparams, search, dev_data, dataset_name):
    """The meta-dev episodes an adaptation search scores its candidates on.

    Arguments
    ---------
    hparams : dict
        ``group_by`` and ``few_shot`` (its seed: the episodes).
    search : dict
        ``k_shots``, ``episodes_per_task``, ``query_utterances``.
    dev_data : DynamicItemDataset
        The meta-dev utterances.
    dataset_name : str
        Named in the results.

    Returns
    -------
    FewShotProtocol
    """
    return FewShotProtocol(
        dev_data,
        group_by=hparams["group_by"],
        k_shots=search["k_shots"],
        episodes_per_task=search["episodes_per_task"],
        query_utterances=search["query_utterances"],
        seed=hparams["few_shot"]["seed"],
        dataset_name=dataset_name,
    )


def choose_adaptations(hparams, brain, dev_data, dataset_name):
    """The method's adaptations, chosen on the meta-dev tasks.

    ``tuned``: the settings best on meta-dev that are not on a cliff edge
    (``select_adaptation``), run as they are; ``default``: the same, made
    conservative and validated (``default_adaptation``: L2-SP, a bound on
    the update, cross-validated steps that may abstain): what the exported
    model does for a user. The search (mean CER and 95 % interval per
    candidate) is written to ``adaptation_search.{json,md}``.

    Arguments
    ---------
    hparams : dict
        ``adaptation_search``, ``group_by``, ``few_shot``,
        ``output_folder``, ``default_adaptation`` (and ``n_support``,
        ``eval_inner_steps`` for a learned rule's report).
    brain : MetaBrain
        The trained method.
    dev_data : DynamicItemDataset
        The meta-dev utterances.
    dataset_name : str
        Named in the results (e.g. ``"LibriSpeech/dev"``).

    Returns
    -------
    dict
        ``tuned`` and ``default`` Adaptations.
    """
    search = hparams["adaptation_search"]
    dev = search_protocol(hparams, search, dev_data, dataset_name)
    candidates = candidate_adaptations(
        search["rules"],
        search["sgd_lrs"],
        search["adam_lrs"],
        search["modes"],
        search.get("l2sps", [0.0]),
    )
    chosen = select_adaptation(
        brain,
        dev,
        candidates,
        steps=search["steps"],
        cache_path=os.path.join(
            hparams["output_folder"], "adaptation_search.json"
        ),
        cliff=search.get("cliff", 0.02),
        cliff_factor=search.get("cliff_factor", 2),
    )
    write_search_table(
        chosen["scores"],
        os.path.join(hparams["output_folder"], "adaptation_search.md"),
        f"{dataset_name}: adaptation search of {hparams['method']}",
    )
    if brain.learns_update_rule():
        report_learned_rates(brain, hparams, dev, dataset_name)
    adaptations = {
        "tuned": chosen["tuned"],
        "default": chosen["tuned"].replace(**hparams["default_adaptation"]),
    }
    if hparams.get("unsupervised_search"):
        adaptations.update(
            choose_unsupervised_adaptations(
                hparams, brain, dev_data, dataset_name
            )
        )
    return adaptations


def choose_unsupervised_adaptations(hparams, brain, dev_data, dataset_name):
    """The method's adaptations without transcripts, chosen on meta-dev.

    The candidates (``unsupervised_search``: rules, rates, the objective,
    a bound on the update) adapt the weights ``unsupervised_params``
    names from the support's audio alone; the query's transcripts score
    them, on meta-dev tasks only, with the cliff rule of
    ``select_adaptation``. ``unsupervised_tuned``: the best setting that
    adapts (at least one step), run as it is (SUTA-style, with its rate
    and steps tuned). ``unsupervised``: what the exported model does:
    the best setting if it lowers the meta-dev CER by at least
    ``min_gain`` below not adapting (zero steps, always scored), else zero
    steps: the exported model then abstains, and says so
    (``adapt_if_it_gains``).
    ``unsupervised_each``: the same choice for episodic use, each meta-dev
    query utterance adapted to alone and transcribed
    (``AdaptiveASR.transcribe_adapting``). Written to
    ``unsupervised_search.{json,md}`` and
    ``unsupervised_each_search.{json,md}``.

    Arguments
    ---------
    hparams : dict
        ``unsupervised_search``, ``group_by``, ``few_shot``,
        ``output_folder``, ``method``.
    brain : MetaBrain
        The trained method.
    dev_data : DynamicItemDataset
        The meta-dev utterances.
    dataset_name : str
        Named in the results.

    Returns
    -------
    dict
        ``unsupervised_tuned``, ``unsupervised`` and ``unsupervised_each``
        Adaptations.
    """
    search = hparams["unsupervised_search"]
    dev = search_protocol(hparams, search, dev_data, dataset_name)
    candidates = candidate_adaptations(
        search["rules"],
        search.get("sgd_lrs", []),
        search.get("adam_lrs", []),
        unsupervised=dict(search["objective"]),
        adapt_params=unsupervised_params(brain.inner_loop.adapt_params),
        max_update=search.get("max_update"),
    )
    chosen = {}
    for name, per_utterance in (("", False), ("_each", True)):
        chosen[name] = select_adaptation(
            brain,
            dev,
            candidates,
            steps=sorted({0, *search["steps"]}),
            cache_path=os.path.join(
                hparams["output_folder"], f"unsupervised{name}_search.json"
            ),
            cliff=search.get("cliff", 0.02),
            cliff_factor=search.get("cliff_factor", 2),
            per_utterance=per_utterance,
        )
        write_search_table(
            chosen[name]["scores"],
            os.path.join(
                hparams["output_folder"], f"unsupervised{name}_search.md"
            ),
            f"{dataset_name}: search of {hparams['method']}'s adaptation "
            "without transcripts"
            + (", each utterance alone" if per_utterance else ""),
        )
    min_gain = search.get("min_gain", 0.0)
    tuned, default = adapt_if_it_gains(chosen[""]["scores"], min_gain)
    _, each = adapt_if_it_gains(chosen["_each"]["scores"], min_gain)
    return {
        "unsupervised_tuned": tuned,
        "unsupervised": default,
        "unsupervised_each": each,
    }


def adapt_if_it_gains(scores, min_gain=0.0):
    """The best adapting setting of a search, and whether to use it.

    Arguments
    ---------
    scores : list of dict
        ``select_adaptation``'s table: ``candidate``, ``steps``, ``cer``,
        ``eligible`` (the cliff rule), zero steps among the step counts.
    min_gain : float
        How much lower (absolute CER) than not adapting the best setting
        must be on meta-dev to be used.

    Returns
    -------
    tuple of Adaptation
        ``(tuned, default)``: the best setting with at least one step
        (eligible if any is), and the same, or with zero steps (the model
        abstains) where it is not eligible or gains less than
        ``min_gain``.

    Example
    -------
    >>> c = {"rule": "adam", "lr": 0.001, "mode": "eval", "folds": 0,
    ...      "steps": 0}
    >>> scores = [
    ...     {"candidate": c, "steps": 0, "cer": 0.40, "eligible": True},
    ...     {"candidate": c, "steps": 3, "cer": 0.398, "eligible": True}]
    >>> tuned, default = adapt_if_it_gains(scores, min_gain=0.01)
    >>> tuned.steps, default.steps
    (3, 0)
    >>> adapt_if_it_gains(scores, min_gain=0.001)[1].steps
    3
    """
    zero = min(r["cer"] for r in scores if r["steps"] == 0)
    adapting = [r for r in scores if r["steps"] > 0]
    eligible = [r for r in adapting if r["eligible"]]
    best = min(eligible or adapting, key=lambda r: (r["cer"], r["steps"]))
    tuned = Adaptation.from_dict({**best["candidate"], "steps": best["steps"]})
    gain = zero - best["cer"]
    if best["eligible"] and gain > 0 and gain >= min_gain:
        return tuned, tuned
    return tuned, tuned.replace(steps=0)


def write_search_table(scores, path, title):
    """The adaptation search as a markdown table (one row per setting).

    Arguments
    ---------
    scores : list of dict
        ``select_adaptation``'s ``scores``.
    path : str
        The ``.md`` file written.
    title : str
        Its heading.

    Returns
    -------
    str
        The table.
    """
    from speechbrain_meta.reports import describe_adaptation, markdown_table

    rows = []
    for r in sorted(scores, key=lambda r: r["cer"]):
        settings = describe_adaptation({**r["candidate"], "steps": r["steps"]})
        ci = "" if r.get("ci95") is None else f" ± {100 * r['ci95']:.1f}"
        rows.append(
            [
                settings,
                f"{100 * r['cer']:.1f}{ci}",
                f"{100 * r['cer_later']:.1f}",
                "yes" if r["eligible"] else "no (cliff)",
                r.get("n_episodes", ""),
            ]
        )
    table = markdown_table(
        [
            "setting",
            "meta-dev CER %",
            "CER % at 2x steps",
            "eligible",
            "episodes",
        ],
        rows,
    )
    if if_main_process():
        with open(path, "w", encoding="utf-8") as fout:
            fout.write(f"# {title}\n\n{table}")
    return table


def few_shot_evaluation(
    hparams, brain, datasets, adaptations, corpus, tasks=None, exported=None
):
    """Runs the few-shot protocol on every evaluation set, unless done.

    The method adapts with each of its ``adaptations`` (see
    ``choose_adaptations``) through its brain, except ``default`` and
    ``unsupervised``, which are measured through the exported model
    (``exported``, an ``AdaptiveASR``: ``adapt`` and ``transcribe_batch``,
    the path a user calls), and ``unsupervised_each``: every query
    utterance adapted to alone by the exported model
    (``transcribe_adapting``; left out without one). Results go to
    ``<output_folder>/few_shot/<set>/``.

    Arguments
    ---------
    hparams : dict
        ``few_shot_sets`` (set name to the column that groups its tasks;
        None: not evaluated),
        ``few_shot``, ``output_folder``, ``method``, ``seed``.
    brain : MetaBrain
        The trained method.
    datasets : dict
        The evaluation sets by name (a missing one is skipped).
    adaptations : dict
        Budget name to Adaptation.
    corpus : str
        Named in the results (``<corpus>/<set>``).
    tasks : dict, optional
        Set name to the tasks evaluated (default: all).
    exported : AdaptiveASR, optional
        The exported model; without it ``default`` runs through the brain.

    Returns
    -------
    dict
        Set name to its results.
    """
    if exported is None:  # only an exported model adapts per utterance
        adaptations = {
            k: v for k, v in adaptations.items() if k != "unsupervised_each"
        }
    wanted = {name: a.describe() for name, a in adaptations.items()}
    if exported is not None:
        for budget in set(adaptations) & set(INTERFACE_BUDGETS):
            wanted[budget] = {**wanted[budget], "through": "AdaptiveASR"}
    results = {}
    for split, group_by in (hparams["few_shot_sets"] or {}).items():
        if group_by is None:  # a layered file turned this set off
            continue
        if datasets.get(split) is None:
            logger.warning("Few-shot set %s not available: skipped", split)
            continue
        protocol = FewShotProtocol(
            datasets[split],
            group_by=group_by,
            tasks=(tasks or {}).get(split),
            dataset_name=f"{corpus}/{split}",
            **hparams["few_shot"],
        )
        out_dir = os.path.join(hparams["output_folder"], "few_shot", split)
        description = protocol.description()
        done = cached_results(out_dir, description)
        if done is not None and done.get("adaptations") == wanted:
            logger.info("Few-shot results already in %s", out_dir)
            results[split] = done
            continue
        # A budget whose adaptation did not change keeps its rows.
        before = (done or {}).get("adaptations") or {}
        rows = [
            row
            for row in (done or {}).get("results", [])
            if row.get("budget") in wanted
            and before.get(row["budget"]) == wanted[row["budget"]]
        ]
        for budget, adaptation in adaptations.items():
            if any(row.get("budget") == budget for row in rows):
                logger.info("Few-shot %s: %s rows kept", split, budget)
                continue
            if budget == "unsupervised_each":
                scored = [
                    protocol.evaluate_each_utterance(
                        exported, hparams["method"]
                    )
                ]
            elif budget in INTERFACE_BUDGETS and exported is not None:
                scored = protocol.evaluate_interface(
                    exported,
                    hparams["method"],
                    unsupervised=budget == "unsupervised",
                )
            else:
                scored = protocol.evaluate(brain, hparams["method"], adaptation)
            for row in scored:
                row.update(budget=budget, seeds=[hparams["seed"]])
                rows.append(row)
        results[split] = write_results(
            out_dir,
            description,
            rows,
            title=f"{corpus} {split}: {hparams['method']}",
            adaptations=wanted,
        )
    return results


def report_learned_rates(brain, hparams, protocol, dataset_name):
    """Writes the learned rule's rates per tensor and step (meta-dev).

    Arguments
    ---------
    brain : MetaOptimizerBrain
        A brain with a learned update rule.
    hparams : dict
        ``n_support``, ``eval_inner_steps``, ``output_folder``, ``method``.
    protocol : FewShotProtocol
        The meta-dev protocol: its first task's support is adapted on.
    dataset_name : str
        Named in the report's title.

    Returns
    -------
    list of dict
        The rates (see ``speechbrain_meta.interpret.learned_rates``).
    """
    k = hparams["n_support"]
    task = protocol.tasks[0]
    support = protocol.batch(protocol.episode(task, 0, k)[0], brain.device)
    rows = learned_rates(brain, support, hparams["eval_inner_steps"])
    paths = write_rate_report(
        rows,
        hparams["output_folder"],
        title=f"{dataset_name} {hparams['method']}: learned inner rates "
        f"(meta-dev task {task})",
    )
    logger.info("Learned rates written to %s", paths["md"])
    return rows


def evaluate_and_export(
    hparams,
    brain,
    datasets,
    tokenizer,
    recipe,
    tasks=None,
    skipped=None,
    export=True,
):
    """Steps 4 to 6: adaptations, few-shot protocol, the exported model.

    With ``run_few_shot`` the method's adaptations are chosen on
    ``datasets["dev"]``, the model is exported (main process) to adapt the
    ``default`` way, and every set of ``few_shot_sets`` is evaluated, the
    ``default`` budget through the exported model. Without it the export
    adapts its own rule, made conservative and validated.

    Arguments
    ---------
    hparams : dict
        The run's hparams.
    brain : MetaBrain
        The trained method (checkpoint selected on meta-dev).
    datasets : dict
        ``dev`` and the evaluation sets.
    tokenizer : CTCTextEncoder
        The label encoder, exported with the model.
    recipe : str
        ``<Corpus>/<recipe>``: the corpus names the results.
    tasks : dict, optional
        Set name to the tasks evaluated (default: all).
    skipped : dict, optional
        Manifest rows skipped per split, reported at the end.
    export : bool
        Write the model for ``AdaptiveASR`` (a CTC model of
        ``speechbrain_meta.asr.CTCASR``'s modules); False: the ``default``
        adaptation is measured through the brain, nothing is exported.

    Returns
    -------
    dict
        Few-shot results per evaluation set.
    """
    corpus = recipe.split("/")[0]
    results = {}
    adaptations = None
    unsupervised = unsupervised_each = None
    if hparams["run_few_shot"]:
        adaptations = choose_adaptations(
            hparams, brain, datasets["dev"], f"{corpus}/dev"
        )
        exported = adaptations["default"]
        unsupervised = adaptations.get("unsupervised")
        unsupervised_each = adaptations.get("unsupervised_each")
    else:
        exported = brain.own_adaptation().replace(
            **hparams["default_adaptation"]
        )
    asr = None  # without an export, `default` runs through the brain too
    if export:
        # The model for AdaptiveASR, adapting the way it is evaluated
        # (written by the main process, the others wait for it).
        run_on_main(
            export_run,
            args=[hparams["output_folder"], brain, tokenizer, exported],
            kwargs={
                "info": {"method": hparams["method"], "recipe": recipe},
                "unsupervised_adaptation": unsupervised,
                "unsupervised_each_adaptation": unsupervised_each,
            },
        )
    if export and adaptations is not None:
        # One savedir per process: SpeechBrain's fetch replaces the links
        # it makes there, and a second process would find them missing.
        rank, _ = world()
        load = "inference_load" + (f"_rank{rank}" if rank else "")
        asr = AdaptiveASR.from_hparams(
            source=os.path.abspath(
                os.path.join(hparams["output_folder"], "inference")
            ),
            savedir=os.path.join(hparams["output_folder"], load),
            run_opts={"device": str(brain.device)},
        )
    if adaptations is not None:
        results = few_shot_evaluation(
            hparams, brain, datasets, adaptations, corpus, tasks, asr
        )
    if skipped and any(skipped.values()):
        logger.warning(
            "Manifest rows skipped: %s",
            {k: len(v) for k, v in skipped.items()},
        )
    return results
