#!/usr/bin/env python3
"""One outer step per algorithm against the limit: (k+1) plain steps.

Uses the SynthTones recipe's CTC model (hparams/maml.yaml), with its CRDNN
encoder and with SpeechBrain's Conformer encoder in its place
(``conformer_ctc.yaml`` beside this script), and one fixed episode
(K = 5 support + Q = 5 query utterances). The floor is what
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
        [--models crdnn,conformer]

Authors
 * speechbrain-meta developers 2026
"""

import io
import os
import sys

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
from speechbrain_meta.layered_yaml import load_layered_hparams  # noqa: E402
from speechbrain_meta.losses import differentiable_ctc  # noqa: E402

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
}


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
    sampler = TaskSampler(datasets["train"], "spk_id", 5, 5, 1, seed=0)
    examples = [datasets["train"][i] for i in next(iter(sampler))]
    episode = sampler.collate_fn()(examples)
    support = sb.dataio.batch.PaddedBatch(examples[: episode.n_support])

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
        return brain

    return episode, support, build


def main(argv=None):
    parser = benchmark_parser(__doc__)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    data = os.path.join(args.json, "outer_step_data")
    device = torch.device(args.device)
    episode, support, build = setup(data, args.device)
    rows, settings = [], {}
    for model in args.models.split(","):
        model_rows, model_settings = outer_steps(
            model, data, episode, support, build, args.repeats, device
        )
        rows += model_rows
        rows += hvp_rows(model, data, episode, build, args.repeats, device)
        settings[model] = model_settings
        plain = model_settings["plain_fit_batch_s"]["median"]
        print(
            f"\n{model}: {model_settings['parameters']} parameters, "
            f"K={episode.n_support} + Q={episode.n_query} utterances, "
            f"plain fit_batch {plain:.3f} s, {torch.get_num_threads()} "
            f"threads, median of {args.repeats}"
        )
    settings.update(
        {
            "support": episode.n_support,
            "query": episode.n_query,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
    )
    print(report("outer_step", rows, args.json, settings))
    return rows


def outer_steps(model, data, episode, support, build, repeats, device):
    """The rows of one model: each algorithm against its floor."""
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    plain = build(ASR, load("maml", data, model))
    plain_step = measure(lambda: plain.fit_batch(support), repeats, 2, sync)
    cases = []
    for method in ALGORITHMS:
        hparams = load(method, data, model)
        Brain = meta_brain_class(ASR, hparams["meta_brain_class"])
        inner = hparams["meta_algorithm"].inner_loop
        cases.append((method, build(Brain, hparams), inner))
    for name, make_rule, first_order in RULES:
        hparams = load("maml", data, model)
        hparams["meta_algorithm"] = MAML(
            InnerLoop(3, update_rule=make_rule(), first_order=first_order)
        )
        hparams["rule_opt_class"] = lambda p: torch.optim.Adam(p, lr=1e-3)
        brain = build(meta_brain_class(ASR, MetaOptimizerBrain), hparams)
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
                f"{model}: {name} ({'first' if inner.first_order else 'second'}"
                f" order, k={k}) vs (k+1) fit_batch",
                ours,
                floor_of(plain_beside, k),
                goal=goal,
                peer_name=f"{k + 1} x plain fit_batch (support-sized batch)",
                model=model,
                inner_steps=k,
                first_order=inner.first_order,
            )
        )
    settings = {
        "parameters": sum(p.numel() for p in plain.modules.parameters()),
        "plain_fit_batch_s": plain_step,
    }
    return rows, settings


def hvp_rows(model, data, episode, build, repeats, device):
    """Second-order MAML's outer step against the HVPs it needs."""
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    hparams = load("maml", data, model)
    brain = build(meta_brain_class(ASR, hparams["meta_brain_class"]), hparams)
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

    step, grad, one_hvp, ctc = measure_interleaved(
        [lambda: brain.fit_batch(episode), gradient, hvp, ctc_hvp],
        repeats,
        2,
        sync,
    )
    needed = {key: k * one_hvp[key] + grad[key] for key in grad}
    shape = "x".join(str(d) for d in log_probs.shape)
    return [
        row(
            f"{model}: maml outer step vs {k} support HVPs + 1 gradient",
            step,
            needed,
            peer_name=f"{k} HVPs + 1 gradient of the support loss",
            model=model,
        ),
        row(
            f"{model}: one HVP of the support loss vs one gradient",
            one_hvp,
            grad,
            goal=(2.5 * (k + 1) - 1) / k,
            peer_name="one gradient (native CTC)",
            model=model,
        ),
        row(
            f"{model}: pure CTC's HVP alone ({shape} log-probs) vs the "
            "model's HVP",
            ctc,
            one_hvp,
            peer_name="the model's HVP",
            model=model,
        ),
    ]


if __name__ == "__main__":
    main(sys.argv[1:])
