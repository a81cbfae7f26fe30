"""What did the meta-optimiser learn? Learned rates per tensor and step.

A learned update rule is opaque unless it is measured. ``learned_rates``
runs the brain's inner loop on a real support set and, for every adapted
tensor and inner step, fits the *effective learning rate*: the scalar
``lr`` with ``fast_next ~ fast - lr * grad`` in the least-squares sense,
``<fast - fast_next, grad> / <grad, grad>``. It is exact for SGD and
``LayerStepLR``, a gradient-weighted mean rate for ``MetaSGD``, and the
rate the learned network behaves like for ``LearnedUpdate``. Rules with
explicit rates also report their distribution (mean, min, max).

``write_rate_report`` writes the table (markdown and JSON) and a heat map
(tensors x steps, log colour scale) as PNG.

Authors
 * speechbrain-meta developers 2026
"""

import math
import os

import torch
from speechbrain.utils.distributed import if_main_process

from speechbrain_meta.reports import (
    markdown_table,
    pyplot,
    save_figure,
    write_json,
)


class _RecordingRule(torch.nn.Module):
    """Wraps an update rule and records every step it takes."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule
        self.steps = []

    def forward(self, fast_weights, grads, step):
        """Applies the wrapped rule and records (step, old, grads, new)."""
        new = self.rule(fast_weights, grads, step)
        self.steps.append(
            (
                step,
                {n: w.detach() for n, w in fast_weights.items()},
                {n: g.detach() for n, g in grads.items()},
                {n: w.detach() for n, w in new.items()},
            )
        )
        return new


def learned_rates(brain, support, inner_steps=None):
    """Effective learning rate of every adapted tensor at every inner step.

    Arguments
    ---------
    brain : MetaBrain
        Any meta brain; its inner loop's rule is measured.
    support : PaddedBatch
        A support set to adapt on.
    inner_steps : int, optional
        Steps to run (default: the brain's adaptation steps, see
        ``MetaBrain.adapted_weights``).

    Returns
    -------
    list of dict
        ``param``, ``step``, ``grad_norm``, ``effective_lr`` and, if the
        rule has explicit rates, ``lr_mean``, ``lr_min``, ``lr_max``. A
        learned network may move a tensor whose gradient vanishes (e.g. a
        bias before batch normalisation): its effective rate is then large
        or negative, and says little; read it with ``grad_norm``.

    Example
    -------
    >>> from speechbrain_meta import MetaInitBrain, MAML, InnerLoop
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> _ = torch.manual_seed(0)  # the weights and the batch
    >>> class Reg(MetaInitBrain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.lin(batch.x.data)
    ...     def compute_objectives(self, out, batch, stage):
    ...         return ((out - batch.y.data) ** 2).mean()
    >>> brain = Reg(modules={"lin": torch.nn.Linear(2, 1)},
    ...             meta_algorithm=MAML(InnerLoop(2, inner_lr=0.3)),
    ...             run_opts={"device": "cpu"})
    >>> support = PaddedBatch([{"x": torch.randn(2), "y": torch.randn(1)}
    ...                        for _ in range(4)])
    >>> rows = learned_rates(brain, support)
    >>> [(r["param"], r["step"], round(r["effective_lr"], 6)) for r in rows]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('lin.weight', 0, 0.3), ('lin.bias', 0, 0.3),
     ('lin.weight', 1, 0.3), ('lin.bias', 1, 0.3)]
    """
    rule = brain.update_rule
    recorder = _RecordingRule(rule)
    brain.adapted_weights(
        support.to(brain.device),
        inner_steps=inner_steps,
        inner_loop=brain.inner_loop.replace(update_rule=recorder),
    )
    rows = []
    for step, old, grads, new in recorder.steps:
        for name in old:
            grad = grads[name].double()
            delta = (old[name] - new[name]).double()
            norm = float((grad * grad).sum())
            row = {
                "param": name,
                "step": int(step),
                "grad_norm": math.sqrt(norm),
                "effective_lr": float((delta * grad).sum()) / norm
                if norm > 0
                else float("nan"),
            }
            if hasattr(rule, "learning_rates"):
                with torch.no_grad():
                    lr = rule.learning_rates(name, step).double()
                row.update(
                    lr_mean=float(lr.mean()),
                    lr_min=float(lr.min()),
                    lr_max=float(lr.max()),
                )
            rows.append(row)
    return rows


def rates_markdown(rows):
    """The rates as a markdown table, one line per tensor, one column per step.

    Arguments
    ---------
    rows : list of dict
        From ``learned_rates``.

    Returns
    -------
    str

    Example
    -------
    >>> print(rates_markdown([{"param": "w", "step": 0, "effective_lr": 0.1}]))
    | adapted tensor | step 0 |
    |---|---|
    | w | 0.1 |
    <BLANKLINE>
    """
    params = list(dict.fromkeys(r["param"] for r in rows))
    steps = sorted({r["step"] for r in rows})
    by = {(r["param"], r["step"]): r for r in rows}
    table = []
    for p in params:
        cells = [p]
        for s in steps:
            r = by[(p, s)]
            cell = f"{r['effective_lr']:.3g}"
            if "lr_min" in r and r["lr_min"] != r["lr_max"]:
                cell += f" [{r['lr_min']:.2g}, {r['lr_max']:.2g}]"
            cells.append(cell)
        table.append(cells)
    header = ["adapted tensor"] + [f"step {s}" for s in steps]
    return markdown_table(header, table)


def write_rate_report(rows, output_folder, title="Learned inner rates"):
    """Writes ``learned_rates.{json,md,png}``.

    Arguments
    ---------
    rows : list of dict
        From ``learned_rates``.
    output_folder : str
        Where to write.
    title : str
        Heading and plot title.

    Returns
    -------
    dict
        Paths written.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"param": p, "step": s, "effective_lr": 0.01 * (s + 1)}
    ...         for p in ("enc.w", "head.w") for s in (0, 1)]
    >>> paths = write_rate_report(rows, tempfile.mkdtemp())
    >>> sorted(paths), os.path.getsize(paths["png"]) > 1000
    (['json', 'md', 'png'], True)
    """
    paths = {
        ext: os.path.join(output_folder, f"learned_rates.{ext}")
        for ext in ("json", "md", "png")
    }
    if not if_main_process():  # under DDP every rank computes, one writes
        return paths
    write_json(paths["json"], rows)
    with open(paths["md"], "w", encoding="utf-8") as fout:
        fout.write(f"### {title}\n\n")
        fout.write(
            "Effective rate `<w - w_next, g> / <g, g>` per adapted tensor and "
            "inner step on a meta-dev support set; `[min, max]` of the rule's "
            "element rates where it has them.\n\n"
        )
        fout.write(rates_markdown(rows))
    params = list(dict.fromkeys(r["param"] for r in rows))
    steps = sorted({r["step"] for r in rows})
    by = {(r["param"], r["step"]): r["effective_lr"] for r in rows}
    grid = [[math.log10(max(by[(p, s)], 1e-12)) for s in steps] for p in params]
    height = max(3.0, 0.22 * len(params) + 1.5)
    fig, ax = pyplot().subplots(figsize=(2.5 + 0.8 * len(steps), height))
    image = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(steps)), [str(s) for s in steps])
    ax.set_yticks(range(len(params)), params, fontsize=6)
    ax.set_xlabel("inner step")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="log10 effective rate")
    save_figure(fig, paths["png"])
    return paths
