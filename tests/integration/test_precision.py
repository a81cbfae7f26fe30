"""--precision=bf16 (CPU autocast) in the inner and outer loops.

The meta-gradient fit_batch forms under bf16 autocast stays close to the
float32 one on the tiny CTC recogniser of test_fit_batch_gradients: cosine
similarity above 0.99 and a relative difference of norm below 10 % (bf16
keeps 8 bits of mantissa: a relative rounding error of 2^-9 per operation,
accumulated over the inner steps' forward and double backward). The
gradients must also differ, or autocast did not run.
"""

import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch
from test_fit_batch_gradients import FEATS, TinyCTC, _model

from speechbrain_meta import FOMAML, MAML, InnerLoop, MetaSGD
from speechbrain_meta.data import Episode


def _batch(gen, n):
    return PaddedBatch(
        [
            {
                "id": f"u{i}",
                "x": torch.randn(9 - i % 3, FEATS, generator=gen) * 2 + 1,
                "tokens": torch.tensor([1 + i % 3, 2, 1 + (i + 1) % 3]),
            }
            for i in range(n)
        ]
    )


def _gradient(algorithm, precision):
    modules = {k: m.float() for k, m in _model().items()}
    brain = TinyCTC(
        modules=modules,
        opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
        hparams={"grad_accumulation_factor": 2},
        run_opts={"device": "cpu", "precision": precision},
        meta_algorithm=algorithm(),
        rule_opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
    )
    brain.init_optimizers()
    gen = torch.Generator().manual_seed(0)
    brain.step = 1  # accumulate, no step
    brain.fit_batch(Episode(_batch(gen, 4), _batch(gen, 3), task="t"))
    params = list(brain.modules.parameters()) + list(
        brain.meta_algorithm.parameters()
    )
    return torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])


ALGORITHMS = {
    "maml": lambda: MAML(InnerLoop(inner_steps=2, inner_lr=0.1)),
    "fomaml": lambda: FOMAML(InnerLoop(inner_steps=2, inner_lr=0.1)),
    "metasgd": lambda: MAML(
        InnerLoop(inner_steps=2, update_rule=MetaSGD(init_lr=0.1))
    ),
}


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_bf16_meta_gradient_close_to_fp32(name):
    fp32 = _gradient(ALGORITHMS[name], "fp32")
    bf16 = _gradient(ALGORITHMS[name], "bf16")
    assert torch.isfinite(bf16).all()
    assert not torch.equal(fp32, bf16)  # autocast ran
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=0)
    assert cosine > 0.99, float(cosine)
    assert (bf16 - fp32).norm() / fp32.norm() < 0.1


def test_fp16_on_cpu_is_refused_or_scaled():
    """fp16 autocast is for CUDA; on CPU SpeechBrain refuses it clearly."""
    with pytest.raises(
        ValueError, match="fp16. This option is not yet supported on CPU"
    ):
        _gradient(ALGORITHMS["maml"], "fp16")
