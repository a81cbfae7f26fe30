#!/usr/bin/env python3
"""One outer step per algorithm against the limit: (k+1) plain steps.

Uses the SynthTones recipe's CTC model (hparams/maml.yaml), with its CRDNN
encoder, with the same CRDNN given the lengths (``crdnn_lengths``:
``crdnn_lengths_ctc.yaml``) and with SpeechBrain's Conformer encoder in
its place (``conformer_ctc.yaml`` beside this script), and one fixed episode
(K = 5 support + Q = 5 query utterances). The attention models are the
SynthDigits recipes' own, on one episode (one language) of the quick main
job's corpus: ``seq2seq``, the joint CTC/attention recogniser
(``meta_seq2seq``: CRDNN, location-aware attentional GRU decoder over
characters), ``transformer``, the same with SpeechBrain's
``TransformerASR`` (``meta_transformer``: convolutional front end,
Conformer encoder, Transformer decoder), and ``st``, the
speech-translation model (``meta_st``: the
same shape, decoding SentencePiece units of the English translation, CTC
on the source transcript). The floor is what
the same data costs a plain SpeechBrain recipe: ``k + 1`` plain
``Brain.fit_batch`` steps (forward, backward, optimiser step) on a batch
of the support's size (K = Q here), the plain step timed in turn with
each outer step (``timing.measure_interleaved``). The goals it checks:
first order at most 1.1x the floor, second order at most 2.5x. Prints a
markdown table and writes ``DIR/outer_step.json`` (rows as in
``timing.report``).

Three more rows per model take second-order MAML apart. Each of its k
inner steps is a Hessian-vector product (HVP) of the support loss: the
gradient with a graph in the forward, its derivative in the outer
backward. So the outer step should cost k HVPs and one query gradient,
and the 2.5x goal asks one HVP for at most (2.5 (k+1) - 1) / k support
gradients (3.0 at k = 3). The rows: the outer step against k HVPs + 1
gradient; one HVP against one gradient (native CTC, no optimiser step);
the twice-differentiable CTC's own HVP, on the support's
log-probabilities, against the model's HVP.

    python benchmarks/outer_step.py [--repeats 5] [--json DIR] [--device cuda:0]
        [--models crdnn,conformer,crdnn_lengths,seq2seq,transformer,st]

Authors
 * speechbrain-meta developers 2026
"""

import functools
import io
import os
import sys
from collections import namedtuple

import ruamel.yaml
import speechbrain as sb
import torch
from timing import benchmark_parser, measure, measure_interleaved, report, row

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthTones", "meta_asr")
sys.path.insert(0, RECIPE)

from synth_tones_prepare import prepare_synth_tones  # noqa: E402
from train import COMMON, dataio_prepare  # noqa: E402

from speechbrain_meta import (  # noqa: E402
    MAML,
    InnerLoop,
    LayerStepLR,
    LearnedUpdate,
    MetaOptimizerBrain,
    MetaSGD,
    meta_brain_class,
)
from speechbrain_meta.asr import CTCASR as ASR  # noqa: E402
from speechbrain_meta.data import TaskSampler  # noqa: E402
from speechbrain_meta.layered_yaml import (  # noqa: E402
    layer_keys,
    load_layered_hparams,
)
from speechbrain_meta.losses import differentiable_ctc  # noqa: E402
from speechbrain_meta.recipe import WarmStartST, load_script  # noqa: E402

ALGORITHMS = {
    "maml": ("maml.yaml", {"inner_steps": 3}),
    "fomaml": ("fomaml.yaml", {"inner_steps": 3}),
    "reptile": ("reptile.yaml", {"inner_steps": 3}),
    "anil": ("anil.yaml", {"inner_steps": 3}),
}

# Learned update rules (MetaOptimizerBrain), 3 inner steps:
# (name, rule factory, first order).
RULES = [
    ("metasgd", lambda: MetaSGD(0.1), False),
    ("metasgd", lambda: MetaSGD(0.1), True),
    ("layer_step_lr", lambda: LayerStepLR(0.1, inner_steps=3), True),
    ("learned_update", lambda: LearnedUpdate(0.1, inner_steps=3), True),
]


# The encoders: the recipe's own (CRDNN), and a file of overrides.
MODELS = {
    "crdnn": None,
    "conformer": os.path.join(os.path.dirname(__file__), "conformer_ctc.yaml"),
    "crdnn_lengths": os.path.join(
        os.path.dirname(__file__), "crdnn_lengths_ctc.yaml"
    ),
}
# The attention models: a SynthDigits recipe each (the algorithms of
# ALGORITHMS that it has a method file for).
SYNTHDIGITS = os.path.join(ROOT, "recipes", "SynthDigits")
RECIPE_MODELS = {
    "seq2seq": "meta_seq2seq",
    "transformer": "meta_transformer",
    "st": "meta_st",
}

# What the rows of one model need: ``load(method)`` its hparams,
# ``brain_class`` (the floor's Brain, and the one the meta brains are put in
# front of), the fixed ``episode``, its ``support`` as a plain batch,
# ``build(brain_class, hparams)`` and whether its output is CTC's.
Model = namedtuple(
    "Model", "name load brain_class episode support build is_ctc"
)


def fixed_episode(dataset, group_by):
    """One seeded episode (K = Q = 5) of ``dataset`` and its support as a
    plain batch."""
    torch.manual_seed(0)
    sampler = TaskSampler(dataset, group_by, 5, 5, 1, seed=0)
    examples = [dataset[i] for i in next(iter(sampler))]
    episode = sampler.collate_fn()(examples)
    return episode, sb.dataio.batch.PaddedBatch(examples[: episode.n_support])


def load(method, out, model="crdnn"):
    path = os.path.join(RECIPE, "hparams", ALGORITHMS[method][0])
    overrides = {
        "output_folder": out,
        "data_folder": os.path.join(out, "data"),
        "meta": dict(ALGORITHMS[method][1]),
    }
    text = io.StringIO()
    ruamel.yaml.YAML().dump(overrides, text)
    text = text.getvalue()
    if MODELS[model] is not None:
        with open(MODELS[model], encoding="utf-8") as fin:
            text += fin.read()
    return load_layered_hparams(path, COMMON, text)[0]


def floor_of(plain, k):
    """The (k+1)-step floor: ``k + 1`` times a plain step's measure."""
    return {key: (k + 1) * value for key, value in plain.items()}


@functools.lru_cache(maxsize=None)  # one corpus and episode for both encoders
def setup(folder, device):
    """The fixed episode, a support-sized plain batch, and a brain builder.

    Arguments
    ---------
    folder : str
        Where the SynthTones corpus and the brains' files go.
    device : str
        The brains' device.

    Returns
    -------
    episode : Episode
        K = 5 support and Q = 5 query utterances of one speaker.
    support : PaddedBatch
        The support utterances as a plain batch.
    build : callable
        ``build(brain_class, hparams)``: a brain ready for ``fit_batch``.
    """
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    base = load("maml", folder)
    prepare_synth_tones(base["data_folder"], **base["corpus"])
    datasets, tokenizer = dataio_prepare(base)
    episode, support = fixed_episode(datasets["train"], "spk_id")
    return episode, support, builder(device, tokenizer)


def builder(device, tokenizer, statistics_from=None):
    """``build(brain_class, hparams)``: a brain ready for ``fit_batch``.

    With ``statistics_from`` (a batch), one training-mode forward of it
    gives the global normalisation its statistics first, as a trained
    model has (the SynthDigits recipes adapt in eval mode).
    """

    def build(brain_class, hparams):
        brain = brain_class(
            modules=hparams["modules"],
            opt_class=hparams["opt_class"],
            hparams=hparams,
            run_opts={"device": device},
        )
        brain.tokenizer = tokenizer
        brain.grad_accumulation_factor = 1  # one outer step per call
        brain.on_fit_start()
        brain.modules.train()
        if statistics_from is not None:
            with torch.no_grad():
                brain.compute_forward(statistics_from, sb.Stage.TRAIN)
        return brain

    return build


def synthtones_model(model, folder, device):
    """A SynthTones CTC model (``crdnn`` or ``conformer``) on the shared
    episode of ``setup``."""
    episode, support, build = setup(folder, device)
    return Model(
        model,
        lambda method: load(method, folder, model),
        ASR,
        episode,
        support,
        build,
        True,
    )


def recipe_model(model, folder, device):
    """An attention model of a SynthDigits recipe (``RECIPE_MODELS``) on
    one episode (K = 5 + Q = 5 utterances of one meta-train language) of
    the quick corpus, prepared in ``folder/synthdigits``.

    Arguments
    ---------
    model : str
        A key of ``RECIPE_MODELS``.
    folder : str
        Where the corpus and the brains' files go.
    device : str
        The brains' device.

    Returns
    -------
    Model
    """
    name = RECIPE_MODELS[model]
    recipe = load_script(
        os.path.join(SYNTHDIGITS, name, "train.py"), f"synthdigits_{name}_train"
    )
    # The quick main job's corpus (run_benchmark.py --quick).
    quick = load_script(
        os.path.join(SYNTHDIGITS, "meta_asr", "run_benchmark.py"),
        "synthdigits_run_benchmark",
    ).QUICK
    shared = {
        "data_folder": os.path.join(folder, "synthdigits"),
        "corpus": quick["corpus"],
        "few_shot_sets": {"test": "lang"},  # no real voices needed
        "st_folder": os.path.join(folder, "synthdigits", "st_en"),
    }

    def load_recipe(method):
        overrides = {
            **shared,
            "output_folder": os.path.join(folder, model, method),
            "inner_steps": ALGORITHMS[method][1]["inner_steps"],
        }
        path = os.path.join(SYNTHDIGITS, name, "hparams", f"{method}.yaml")
        known = set().union(*map(layer_keys, [*recipe.COMMON, path]))
        overrides = {k: v for k, v in overrides.items() if k in known}
        return load_layered_hparams(path, recipe.COMMON, overrides)[0]

    hparams = load_recipe("maml")
    if model == "st":
        tokenizer = recipe.prepare_translations(hparams)
        datasets, tokenizer, _ = recipe.dataio_prepare(hparams, tokenizer)
        brain_class = WarmStartST
    else:
        recipe.prepare_corpora(hparams)
        datasets, tokenizer, _ = recipe.dataio_prepare(hparams)
        brain_class = recipe.ASR
    episode, support = fixed_episode(datasets["train"], "lang")
    return Model(
        model,
        load_recipe,
        brain_class,
        episode,
        support,
        builder(device, tokenizer, statistics_from=support),
        False,
    )


def main(argv=None):
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--models", default=",".join(list(MODELS) + list(RECIPE_MODELS))
    )
    args = parser.parse_args(argv)
    data = os.path.join(args.json, "outer_step_data")
    device = torch.device(args.device)
    rows, settings = [], {}
    for name in args.models.split(","):
        if name in RECIPE_MODELS:
            model = recipe_model(name, data, args.device)
        elif name in MODELS:
            model = synthtones_model(name, data, args.device)
        else:
            parser.error(
                f"--models: {name!r} is none of "
                f"{list(MODELS) + list(RECIPE_MODELS)}"
            )
        model_rows, model_settings = outer_steps(model, args.repeats, device)
        rows += model_rows
        rows += hvp_rows(model, args.repeats, device)
        settings[name] = {
            **model_settings,
            "support": model.episode.n_support,
            "query": model.episode.n_query,
        }
        plain = model_settings["plain_fit_batch_s"]["median"]
        print(
            f"\n{name}: {model_settings['parameters']} parameters, "
            f"K={model.episode.n_support} + Q={model.episode.n_query} "
            f"utterances, plain fit_batch {plain:.3f} s, "
            f"{torch.get_num_threads()} threads, median of {args.repeats}"
        )
    settings.update(
        {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
    )
    print(report("outer_step", rows, args.json, settings))
    return rows


def has_method(model, method):
    """Whether the model's recipe has a method file for ``method``."""
    if model.name not in RECIPE_MODELS:
        return True
    folder = os.path.join(SYNTHDIGITS, RECIPE_MODELS[model.name], "hparams")
    return os.path.exists(os.path.join(folder, f"{method}.yaml"))


def outer_steps(model, repeats, device):
    """The rows of one model: each algorithm against its floor."""
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    build, episode, support = model.build, model.episode, model.support
    plain = build(model.brain_class, model.load("maml"))
    plain_step = measure(lambda: plain.fit_batch(support), repeats, 2, sync)
    cases = []
    for method in ALGORITHMS:
        if not has_method(model, method):
            continue
        hparams = model.load(method)
        Brain = meta_brain_class(model.brain_class, hparams["meta_brain_class"])
        inner = hparams["meta_algorithm"].inner_loop
        cases.append((method, build(Brain, hparams), inner))
    for name, make_rule, first_order in RULES:
        hparams = model.load("maml")
        hparams["meta_algorithm"] = MAML(
            InnerLoop(3, update_rule=make_rule(), first_order=first_order)
        )
        hparams["rule_opt_class"] = lambda p: torch.optim.Adam(p, lr=1e-3)
        Brain = meta_brain_class(model.brain_class, MetaOptimizerBrain)
        brain = build(Brain, hparams)
        cases.append((name, brain, hparams["meta_algorithm"].inner_loop))
    rows = []
    for name, brain, inner in cases:
        k = inner.inner_steps
        goal = 1.1 if inner.first_order else 2.5
        # The floor's plain step timed in turn with the case's outer step.
        ours, plain_beside = measure_interleaved(
            [
                lambda: brain.fit_batch(episode),
                lambda: plain.fit_batch(support),
            ],
            repeats,
            2,
            sync,
        )
        rows.append(
            row(
                f"{model.name}: {name} "
                f"({'first' if inner.first_order else 'second'}"
                f" order, k={k}) vs (k+1) fit_batch",
                ours,
                floor_of(plain_beside, k),
                goal=goal,
                peer_name=f"{k + 1} x plain fit_batch (support-sized batch)",
                model=model.name,
                inner_steps=k,
                first_order=inner.first_order,
            )
        )
    settings = {
        "parameters": sum(p.numel() for p in plain.modules.parameters()),
        "plain_fit_batch_s": plain_step,
    }
    return rows, settings


def hvp_rows(model, repeats, device):
    """Second-order MAML's outer step against the HVPs it needs."""
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    hparams = model.load("maml")
    Brain = meta_brain_class(model.brain_class, hparams["meta_brain_class"])
    brain = model.build(Brain, hparams)
    episode = model.episode
    k = hparams["meta_algorithm"].inner_loop.inner_steps
    weights = list(
        brain.meta_parameters(hparams["meta_algorithm"].inner_loop).items()
    )
    names, tensors = [n for n, _ in weights], [w for _, w in weights]
    support = episode.support
    gen = torch.Generator().manual_seed(0)
    vector = [torch.randn(w.shape, generator=gen).to(w) for w in tensors]

    def support_loss(weights, create_graph):
        with brain.support_forward_context(create_graph):
            return brain.task_loss(dict(zip(names, weights)), support)

    def gradient():
        torch.autograd.grad(support_loss(tensors, False), tensors)

    def hvp_of(loss, inputs, v):
        grads = torch.autograd.grad(
            loss, inputs, create_graph=True, allow_unused=True
        )
        dot = sum((g * u).sum() for g, u in zip(grads, v) if g is not None)
        torch.autograd.grad(dot, inputs, allow_unused=True)

    def hvp():
        hvp_of(support_loss(tensors, True), tensors, vector)

    steps = [lambda: brain.fit_batch(episode), gradient, hvp]
    if model.is_ctc:
        steps.append(ctc_hvp_of(brain, support, hvp_of, gen))
    step, grad, one_hvp, *ctc = measure_interleaved(steps, repeats, 2, sync)
    needed = {key: k * one_hvp[key] + grad[key] for key in grad}
    rows = [
        row(
            f"{model.name}: maml outer step vs {k} support HVPs + 1 gradient",
            step,
            needed,
            peer_name=f"{k} HVPs + 1 gradient of the support loss",
            model=model.name,
        ),
        row(
            f"{model.name}: one HVP of the support loss vs one gradient",
            one_hvp,
            grad,
            goal=(2.5 * (k + 1) - 1) / k,
            peer_name="one gradient of the support loss",
            model=model.name,
        ),
    ]
    if ctc:
        rows.append(
            row(
                f"{model.name}: pure CTC's HVP alone "
                f"({steps[-1].shape} log-probs) vs the model's HVP",
                ctc[0],
                one_hvp,
                peer_name="the model's HVP",
                model=model.name,
            )
        )
    return rows


def ctc_hvp_of(brain, support, hvp_of, gen):
    """The twice-differentiable CTC's HVP alone, on the support's
    log-probabilities (a callable; ``.shape`` names their shape)."""
    with torch.no_grad(), brain.support_forward_context(False):
        log_probs, wav_lens = brain.compute_forward(support, sb.Stage.TRAIN)
    log_probs = log_probs.detach().requires_grad_(True)
    tokens, token_lens = support.to(brain.device).tokens
    ctc_vector = torch.randn(log_probs.shape, generator=gen).to(log_probs)

    def ctc_hvp():
        with differentiable_ctc():
            loss = brain.hparams.ctc_cost(
                log_probs, tokens, wav_lens, token_lens
            )
        hvp_of(loss, [log_probs], [ctc_vector])

    ctc_hvp.shape = "x".join(str(d) for d in log_probs.shape)
    return ctc_hvp


if __name__ == "__main__":
    main(sys.argv[1:])
