"""The few-shot evaluation, shared by every method and recipe.

* ``protocol.py``: ``FewShotProtocol``, the fixed episodes and the loop that
  adapts and scores every method on them;
* ``classification.py``: ``WayShotProtocol``, the same for N-way K-shot
  classification (accuracy);
* ``scoring.py``: how a query is scored (default: the recipe's decoding);
* ``stats.py``: means and confidence intervals;
* ``results.py``: the ``few_shot_results.json`` contract, its I/O (its
  tables and plot are written by ``speechbrain_meta.reports``);
* ``selection.py``: each method's adaptation settings, chosen on meta-dev.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.evaluation.classification import (
    WayShotProtocol,
    choose_way_shot_adaptation,
    query_accuracy,
)
from speechbrain_meta.evaluation.protocol import FewShotProtocol
from speechbrain_meta.evaluation.results import (
    RESULTS_JSON,
    RESULTS_MD,
    RESULTS_PNG,
    cached_results,
    load_results,
    merge_results,
    pool_seeds,
    validate_results,
    write_results,
    write_way_shot_results,
)
from speechbrain_meta.evaluation.scoring import recipe_error_rates
from speechbrain_meta.evaluation.selection import (
    candidate_adaptations,
    select_adaptation,
)
from speechbrain_meta.evaluation.stats import confidence_interval, summary_row
from speechbrain_meta.reports import (
    is_translation,
    plot_results,
    results_table,
    way_shot_table,
)

__all__ = [
    "FewShotProtocol",
    "RESULTS_JSON",
    "RESULTS_MD",
    "RESULTS_PNG",
    "cached_results",
    "candidate_adaptations",
    "choose_way_shot_adaptation",
    "confidence_interval",
    "is_translation",
    "load_results",
    "merge_results",
    "pool_seeds",
    "plot_results",
    "recipe_error_rates",
    "results_table",
    "select_adaptation",
    "summary_row",
    "validate_results",
    "WayShotProtocol",
    "query_accuracy",
    "way_shot_table",
    "write_results",
    "write_way_shot_results",
]
