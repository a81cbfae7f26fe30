"""Choosing a method's adaptation settings on meta-dev tasks.

The few-shot protocol adapts each method with its own settings. Where a
method has a free setting (a baseline's fine-tuning rate), it is chosen
here by the protocol's own score on *meta-dev* tasks, never on meta-test.

Authors
 * speechbrain-meta developers 2026
"""

import os

from speechbrain.utils.logger import get_logger

from speechbrain_meta.evaluation.results import load_results
from speechbrain_meta.reports import write_json
from speechbrain_meta.update_rules import SGD

logger = get_logger(__name__)


def select_adapt_lr(brain, protocol, grid, cache_path=None):
    """The plain-SGD adaptation rate with the lowest meta-dev CER.

    Arguments
    ---------
    brain : MetaBrain
        The method (its inner loop's other settings are kept).
    protocol : FewShotProtocol
        Episodes of meta-dev tasks (one k).
    grid : list of float
        Candidate rates.
    cache_path : str, optional
        A JSON file remembering the choice for this grid.

    Returns
    -------
    tuple
        ``(lr, inner_loop)``: the chosen rate and the inner loop that
        adapts with it.
    """
    grid = [float(lr) for lr in grid]
    if cache_path is not None and os.path.exists(cache_path):
        chosen = load_results(cache_path)
        if chosen.get("grid") == grid:
            return chosen["lr"], brain.inner_loop.replace(
                update_rule=SGD(chosen["lr"])
            )
    scores = {}
    for lr in grid:
        inner_loop = brain.inner_loop.replace(update_rule=SGD(lr))
        method = f"{type(brain).__name__}@lr={lr}"
        row = protocol.evaluate(brain, method, inner_loop=inner_loop)[0]
        scores[lr] = row["cer_mean"]
    best = min(grid, key=lambda lr: scores[lr])
    logger.info("Adaptation lr %s selected on meta-dev: %s", best, scores)
    if cache_path is not None:
        write_json(cache_path, {"grid": grid, "lr": best, "dev_cer": scores})
    return best, brain.inner_loop.replace(update_rule=SGD(best))
