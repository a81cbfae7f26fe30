"""A meta-training run holds steady: no tensor or graph outlives its step.

30 outer steps of second-order MAML (and of a learned rule) on the tiny CTC
recogniser: after the first 5 steps (optimiser state, cached functional
model), the number of live tensors stops growing, and none of them carries
an autograd graph (``grad_fn``) between steps. The 500-step version on the
SynthDigits model, with RSS, is ``benchmarks/memory.py``.
"""

import gc
import warnings

import pytest
import torch
from test_fit_batch_gradients import FEATS, TinyCTC, _model
from test_precision import ALGORITHMS, _batch

from speechbrain_meta.data import Episode


def _live_tensors():
    gc.collect()
    with warnings.catch_warnings():  # isinstance on deprecated torch names
        warnings.simplefilter("ignore", FutureWarning)
        tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    return len(tensors), sum(t.grad_fn is not None for t in tensors)


class RecurrentCTC(TinyCTC):
    """The tiny recogniser with an LSTM (whose ``_flat_weights`` list can
    hold a task's fast weights after ``functional_call``)."""

    def compute_forward(self, batch, stage):
        x, lens = batch.x
        x = self.modules.normalize(x, lens)
        x = self.modules.rnn(x)[0]
        return self.modules.net(x).log_softmax(-1), lens


def _modules(recurrent):
    modules = {k: m.float() for k, m in _model().items()}
    if recurrent:
        torch.manual_seed(1)
        modules["rnn"] = torch.nn.LSTM(FEATS, FEATS, batch_first=True)
    return modules


@pytest.mark.parametrize(
    "name, recurrent", [("maml", False), ("metasgd", False), ("maml", True)]
)
def test_thirty_outer_steps_hold_no_graph_and_no_growth(name, recurrent):
    brain = (RecurrentCTC if recurrent else TinyCTC)(
        modules=_modules(recurrent),
        opt_class=lambda p: torch.optim.Adam(p, lr=1e-3),
        hparams={"grad_accumulation_factor": 2},
        run_opts={"device": "cpu"},
        meta_algorithm=ALGORITHMS[name](),
        rule_opt_class=lambda p: torch.optim.Adam(p, lr=1e-3),
    )
    brain.init_optimizers()
    gen = torch.Generator().manual_seed(0)
    episodes = [
        Episode(_batch(gen, 4), _batch(gen, 3), task=f"t{i}") for i in range(4)
    ]
    # Tensors with a graph that earlier tests in this process left alive
    # are not this brain's: only more than these would be.
    graphs_before = _live_tensors()[1]
    counts = []
    for step in range(1, 61):  # 30 outer steps of 2 tasks
        brain.step = step
        brain.fit_batch(episodes[step % 4])
        if step % 10 == 0:  # every 5 outer steps
            counts.append(_live_tensors())
    assert brain.optimizer_step == 30
    assert all(graph <= graphs_before for _, graph in counts), counts
    after_warmup = [n for n, _ in counts[1:]]  # from outer step 10 on
    assert max(after_warmup) == min(after_warmup), after_warmup
