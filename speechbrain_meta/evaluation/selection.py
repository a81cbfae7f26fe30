"""Choosing each method's adaptation settings on meta-dev tasks.

Every method, baselines included, adapts in the few-shot protocol with the
settings that are best *for it*: the update rule (its own, SGD or Adam),
the rate, the number of steps and the normalisation mode, chosen by the
protocol's own score on *meta-dev* episodes, never on meta-test ones.
Each candidate (rule, rate, mode) adapts once for the largest step count;
its trajectory is scored at every step count of the grid, so the choice
among step counts costs decoding only. The same search gives the best
settings at a fixed small step budget (the "quick" adaptation).

Authors
 * speechbrain-meta developers 2026
"""

import os

from speechbrain.utils.logger import get_logger

from speechbrain_meta.adaptation import Adaptation
from speechbrain_meta.evaluation.results import load_results
from speechbrain_meta.evaluation.scoring import recipe_error_rates
from speechbrain_meta.inner import NonFiniteInnerLoss
from speechbrain_meta.reports import write_json

logger = get_logger(__name__)


def candidate_adaptations(rules, sgd_lrs=(), adam_lrs=(), modes=("eval",)):
    """The (rule, rate, mode) combinations a search tries.

    Arguments
    ---------
    rules : list of str
        Among ``own``, ``sgd``, ``adam``.
    sgd_lrs, adam_lrs : list of float
        Rates tried with ``sgd`` and ``adam``.
    modes : list of str
        ``eval`` and/or ``train`` (normalisation and dropout mode).

    Returns
    -------
    list of Adaptation
        With ``steps`` left at 0 (the search sets them).

    Example
    -------
    >>> [a.describe()["rule"] for a in candidate_adaptations(
    ...     ["own", "adam"], adam_lrs=[1e-3, 1e-2], modes=["eval"])]
    ['own', 'adam', 'adam']
    """
    out = []
    for mode in modes:
        if mode not in ("eval", "train"):
            raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
        for rule in rules:
            lrs = {"own": [None], "sgd": sgd_lrs, "adam": adam_lrs}[rule]
            for lr in lrs:
                out.append(
                    Adaptation(rule, lr=lr, steps=0, train_mode=mode == "train")
                )
    return out


def select_adaptation(
    brain,
    protocol,
    candidates,
    steps,
    quick_steps=None,
    score=None,
    cache_path=None,
):
    """The candidate and step count with the lowest meta-dev CER.

    Arguments
    ---------
    brain : MetaBrain
        The method.
    protocol : FewShotProtocol
        Meta-dev episodes; every k > 0 of it is scored.
    candidates : list of Adaptation
        From ``candidate_adaptations``.
    steps : list of int
        Step counts to choose from.
    quick_steps : int, optional
        Also choose the best candidate at this fixed step count.
    score : callable, optional
        As for ``FewShotProtocol.evaluate``.
    cache_path : str, optional
        A JSON file that remembers the search (reused when the candidates,
        steps and episodes are the same).

    Returns
    -------
    dict
        ``tuned`` (and ``quick``) : the chosen ``Adaptation``; ``scores``:
        the meta-dev CER of every (candidate, steps).
    """
    score = recipe_error_rates if score is None else score
    steps = sorted(
        {int(s) for s in steps} | ({int(quick_steps)} if quick_steps else set())
    )
    key = {
        "candidates": [c.describe() for c in candidates],
        "steps": steps,
        "episodes": protocol.description(),
    }
    scores = None
    if cache_path is not None and os.path.exists(cache_path):
        cached = load_results(cache_path)
        if cached.get("key") == key:
            scores = cached["scores"]
    if scores is None:
        scores = _search(brain, protocol, candidates, steps, score)
        if cache_path is not None:
            write_json(cache_path, {"key": key, "scores": scores})

    def best(allowed):
        rows = [r for r in scores if r["steps"] in allowed]
        return min(rows, key=lambda r: (r["cer"], r["steps"]))

    chosen = {"scores": scores}
    for name, allowed in (("tuned", steps), ("quick", [quick_steps])):
        if name == "quick" and not quick_steps:
            continue
        row = best(allowed)
        chosen[name] = Adaptation.from_dict(
            {**row["candidate"], "steps": row["steps"]}
        )
        logger.info(
            "%s adaptation chosen on meta-dev: %s (CER %.4f)",
            name,
            chosen[name],
            row["cer"],
        )
    return chosen


def _search(brain, protocol, candidates, steps, score):
    brain.modules.eval()
    queries = protocol.queries(brain.device)
    rows = []
    for candidate in candidates:
        candidate = candidate.replace(steps=max(steps))
        totals = {s: [] for s in steps}
        for task in protocol.tasks:
            for k in [k for k in protocol.k_shots if k > 0]:
                for e in range(protocol.episodes_per_task):
                    support = protocol.examples(protocol.episode(task, e, k)[0])
                    try:
                        path = candidate.trajectory(brain, support)
                    except NonFiniteInnerLoss:
                        for s in steps:
                            totals[s].append(1.0)
                        continue
                    for s in steps:
                        cer, _ = score(brain, path[s], queries[task])
                        totals[s].append(cer)
        for s in steps:
            rows.append(
                {
                    "candidate": candidate.replace(steps=0).describe(),
                    "steps": s,
                    "cer": sum(totals[s]) / len(totals[s]),
                }
            )
    return rows
