"""Choosing each method's adaptation settings on meta-dev tasks.

Every method, baselines included, adapts in the few-shot protocol with the
settings that are best *for it*: the update rule (its own, SGD or Adam),
the rate, the number of steps and the normalisation mode, chosen by the
protocol's own score on *meta-dev* episodes, never on meta-test ones.
Each candidate (rule, rate, mode) adapts once for the largest step count;
its trajectory is scored at every step count of the grid, so the choice
among step counts costs decoding only.

Cliff edges are refused: a (candidate, steps) is eligible only if the
same candidate at ``cliff_factor`` times the steps (scored on the same
trajectory, which runs that far) is at most ``cliff`` worse in CER
(absolute). A setting that is good at 5 steps and bad at 10 is one small
change of speaker away from being bad, and a user who adapts a little
longer falls off it. Every (candidate, steps) is written with its mean
CER, a 95 % interval over the meta-dev episodes and whether it passed.

An adaptation used one utterance at a time (episodic adaptation without
transcripts: adapt to the utterance, transcribe it, reset) is searched
the same way with ``per_utterance``: each meta-dev query utterance is
adapted to alone and scored, each an episode.

Authors
 * speechbrain-meta developers 2026
"""

import os

from speechbrain.utils.logger import get_logger

from speechbrain_meta.adaptation import Adaptation
from speechbrain_meta.evaluation.results import load_results
from speechbrain_meta.evaluation.scoring import recipe_error_rates
from speechbrain_meta.evaluation.stats import confidence_interval
from speechbrain_meta.inner import NonFiniteInnerLoss
from speechbrain_meta.reports import write_json

logger = get_logger(__name__)


def candidate_adaptations(
    rules,
    sgd_lrs=(),
    adam_lrs=(),
    modes=("eval",),
    l2sps=(0.0,),
    **shared,
):
    """The (rule, rate, mode, L2-SP weight) combinations a search tries.

    Arguments
    ---------
    rules : list of str
        Among ``own``, ``sgd``, ``adam``.
    sgd_lrs, adam_lrs : list of float
        Rates tried with ``sgd`` and ``adam``.
    modes : list of str
        ``eval`` and/or ``train`` (normalisation and dropout mode).
    l2sps : list of float
        L2-SP weights tried with each (0: plain fine-tuning).
    **shared : dict
        ``Adaptation`` settings every candidate has (e.g. ``unsupervised``,
        ``adapt_params``, ``max_update``: a search of adaptations without
        transcripts).

    Returns
    -------
    list of Adaptation
        With ``steps`` left at 0 (the search sets them).

    Example
    -------
    >>> [(a.rule, a.l2sp) for a in candidate_adaptations(
    ...     ["own", "adam"], adam_lrs=[1e-3], l2sps=[0.0, 1.0])]
    [('own', 0.0), ('own', 1.0), ('adam', 0.0), ('adam', 1.0)]
    >>> a = candidate_adaptations(["adam"], adam_lrs=[1e-3],
    ...     unsupervised={"objective": "entropy"})[0]
    >>> a.criterion, a.unsupervised.temperature
    ('objective', 2.5)
    """
    out = []
    for mode in modes:
        if mode not in ("eval", "train"):
            raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
        for rule in rules:
            lrs = {"own": [None], "sgd": sgd_lrs, "adam": adam_lrs}[rule]
            for lr in lrs:
                for l2sp in l2sps:
                    out.append(
                        Adaptation(
                            rule,
                            lr=lr,
                            steps=0,
                            train_mode=mode == "train",
                            l2sp=l2sp,
                            **shared,
                        )
                    )
    return out


def select_adaptation(
    brain,
    protocol,
    candidates,
    steps,
    score=None,
    cache_path=None,
    cliff=0.02,
    cliff_factor=2,
    per_utterance=False,
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
    score : callable, optional
        As for ``FewShotProtocol.evaluate``.
    cache_path : str, optional
        A JSON file that remembers the search (reused when the candidates,
        steps and episodes are the same).
    cliff : float
        The largest CER increase (absolute) allowed at ``cliff_factor``
        times the steps.
    cliff_factor : int
        How much longer the adaptation must stay good (1: no check).
    per_utterance : bool
        Score episodic adaptation instead: every query utterance adapted
        to alone and transcribed (an adaptation without transcripts, used
        one utterance at a time); each utterance's CER is an episode.

    Returns
    -------
    dict
        ``tuned``: the chosen ``Adaptation``; ``scores``: the meta-dev CER
        of every (candidate, steps), with ``ci95``, the CER at
        ``cliff_factor`` times the steps and ``eligible``.
    """
    score = recipe_error_rates if score is None else score
    steps = sorted({int(s) for s in steps})
    factor = max(int(cliff_factor), 1)
    scored = sorted(set(steps) | {s * factor for s in steps})
    key = {
        "candidates": [c.describe() for c in candidates],
        "steps": scored,
        "episodes": protocol.description(),
    }
    if per_utterance:
        key["per_utterance"] = True
    scores = None
    if cache_path is not None and os.path.exists(cache_path):
        cached = load_results(cache_path)
        if cached.get("key") == key:
            scores = cached["scores"]
    if scores is None:
        episodes = (
            _utterance_episodes if per_utterance else _support_episodes
        )(protocol, brain.device)
        scores = _search(brain, episodes, candidates, scored, score)
        if cache_path is not None:
            write_json(cache_path, {"key": key, "scores": scores})
    table, row = choose_setting(scores, steps, cliff, factor)
    chosen = Adaptation.from_dict({**row["candidate"], "steps": row["steps"]})
    logger.info(
        "adaptation chosen on meta-dev: %s (CER %.4f)", chosen, row["cer"]
    )
    return {"scores": table, "tuned": chosen}


def choose_setting(scores, steps, cliff=0.02, cliff_factor=2):
    """The search's table and its choice (the rule of ``select_adaptation``).

    Arguments
    ---------
    scores : list of dict
        Every scored (candidate, steps): ``candidate``, ``steps``, ``cer``.
    steps : list of int
        Step counts to choose from (the others are the cliff checks).
    cliff : float
        The largest CER increase allowed at ``cliff_factor`` times the steps.
    cliff_factor : int
        How much longer the adaptation must stay good.

    Returns
    -------
    tuple
        ``(table, chosen)``: the rows of the step counts to choose from,
        each with ``cer_later`` and ``eligible``, and the chosen row.

    Example
    -------
    >>> a, b = {"rule": "a"}, {"rule": "b"}
    >>> scores = [{"candidate": a, "steps": 1, "cer": 0.3},
    ...           {"candidate": a, "steps": 2, "cer": 0.6},
    ...           {"candidate": b, "steps": 1, "cer": 0.35},
    ...           {"candidate": b, "steps": 2, "cer": 0.34}]
    >>> choose_setting(scores, [1])[1]["candidate"]
    {'rule': 'b'}
    """
    factor = max(int(cliff_factor), 1)
    by_key = {
        (repr(sorted(r["candidate"].items())), r["steps"]): r for r in scores
    }
    table = []
    for row in scores:
        if row["steps"] not in steps:
            continue
        later = by_key[
            (repr(sorted(row["candidate"].items())), row["steps"] * factor)
        ]
        table.append(
            {
                **row,
                "cer_later": later["cer"],
                "eligible": later["cer"] <= row["cer"] + cliff,
            }
        )
    eligible = [r for r in table if r["eligible"]] or table
    return table, min(eligible, key=lambda r: (r["cer"], r["steps"]))


def _support_episodes(protocol, device):
    """``(support, query)`` of every meta-dev episode with k > 0."""
    queries = protocol.queries(device)
    return [
        (protocol.examples(protocol.episode(task, e, k)[0]), queries[task])
        for task in protocol.tasks
        for k in protocol.k_shots
        if k > 0
        for e in range(protocol.episodes_per_task)
    ]


def _utterance_episodes(protocol, device):
    """``(support, query)``: each meta-dev query utterance, alone, as both."""
    return [
        (protocol.examples([index]), protocol.batch([index], device))
        for task in protocol.tasks
        for index in protocol.episode(task, 0, 0)[1]
    ]


def _search(brain, episodes, candidates, steps, score):
    """Every candidate adapts on every episode's support once, for the most
    steps; its trajectory is scored on the query at each step count.
    """
    brain.modules.eval()
    rows = []
    for candidate in candidates:
        candidate = candidate.replace(steps=max(steps))
        totals = {s: [] for s in steps}
        for support, query in episodes:
            try:
                path = candidate.trajectory(brain, support)
            except NonFiniteInnerLoss:
                for s in steps:
                    totals[s].append(1.0)
                continue
            for s in steps:
                totals[s].append(score(brain, path[s], query)[0])
        rows += _score_rows(candidate, totals)
    return rows


def _score_rows(candidate, totals):
    """A candidate's rows: mean CER and 95 % interval per step count."""
    rows = []
    for steps, cers in totals.items():
        mean, ci95 = confidence_interval(cers)
        rows.append(
            {
                "candidate": candidate.replace(steps=0).describe(),
                "steps": steps,
                "cer": mean,
                "ci95": ci95,
                "n_episodes": len(cers),
            }
        )
    return rows
