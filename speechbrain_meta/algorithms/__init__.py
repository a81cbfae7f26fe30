"""Meta-learning algorithms: each one short file, read as its paper.

An algorithm turns one task episode into an outer objective. It gets a
*learner* (a ``MetaBrain``) that provides

* ``learner.meta_parameters(inner_loop)``: the selected meta-parameters,
* ``learner.adapt(params, support, inner_loop, ...)``: the one inner loop,
* ``learner.task_loss(fast_weights, batch)``: the loss of the model evaluated
  with the fast weights,

and returns ``(objective, reported_loss)``: the objective is back-propagated
into the meta-parameters by the brain, the reported loss is logged.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain_meta.algorithms.finetune import FineTune
from speechbrain_meta.algorithms.maml import ANIL, FOMAML, MAML
from speechbrain_meta.algorithms.reptile import Reptile

__all__ = ["ANIL", "FOMAML", "FineTune", "MAML", "Reptile"]
