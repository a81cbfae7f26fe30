"""--precision=bf16 and fp16 in the inner and outer loops.

The meta-gradient fit_batch forms under bf16 autocast stays close to the
float32 one on the tiny CTC recogniser of test_fit_batch_gradients: bf16
keeps 8 bits of mantissa (unit roundoff u = 2^-8 = 0.39 %), and the
relative difference of norm must stay within 4 u = 1.6 % (measured here:
0.6 % for MAML, FOMAML and MetaSGD), which is a cosine similarity above
1 - (4 u)^2 / 2 = 0.99988. It must also be at least u / 40 = 0.01 %:
below that, autocast did not run.

fp16 is CUDA's (SpeechBrain refuses it on CPU): the inner gradients are
scaled by hand with their own dynamic loss scale, which backs off on an
overflow and runs the task again. On CPU the back-off is checked with
GradScalers on float32, where power-of-two scales are exact: the
meta-gradient must equal the unscaled one. Set ``SBM_TEST_DEVICE=cuda`` to
run these tests on a GPU (then fp16 is compared with float32 as bf16 is).
"""

import os

import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch
from test_fit_batch_gradients import FEATS, TinyCTC, _model

from speechbrain_meta import FOMAML, MAML, InnerLoop, MetaSGD
from speechbrain_meta.data import Episode

DEVICE = os.environ.get("SBM_TEST_DEVICE", "cpu")


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


def _gradient(algorithm, precision, scales=None, brain_out=None):
    """The meta-gradient of one fit_batch (accumulated, no step).

    ``scales=(outer, inner)`` replaces the GradScaler by an enabled one of
    that initial scale and starts the inner scale there.
    """
    modules = {k: m.float() for k, m in _model().items()}
    brain = TinyCTC(
        modules=modules,
        opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
        hparams={"grad_accumulation_factor": 2},
        run_opts={"device": DEVICE, "precision": precision},
        meta_algorithm=algorithm(),
        rule_opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
    )
    brain.init_optimizers()
    if scales is not None:
        brain.scaler = torch.GradScaler(DEVICE, init_scale=scales[0])
        brain.inner_loss_scale = scales[1]
    if brain_out is not None:
        brain_out.append(brain)
    gen = torch.Generator().manual_seed(0)
    brain.step = 1  # accumulate, no step
    brain.fit_batch(Episode(_batch(gen, 4), _batch(gen, 3), task="t"))
    params = list(brain.modules.parameters()) + list(
        brain.meta_algorithm.parameters()
    )
    grad = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
    return grad.cpu() / (1.0 if scales is None else scales[0])


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
    unit = 2.0**-8  # bf16's unit roundoff
    relative = float((bf16 - fp32).norm() / fp32.norm())
    assert unit / 40 < relative < 4 * unit, relative
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=0)
    assert cosine > 1 - (4 * unit) ** 2 / 2, float(cosine)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_fp16(name):
    """On CUDA close to fp32 (as bf16, tighter); on CPU refused clearly."""
    if not DEVICE.startswith("cuda"):
        with pytest.raises(
            ValueError, match="fp16. This option is not yet supported on CPU"
        ):
            _gradient(ALGORITHMS[name], "fp16")
        return
    fp32 = _gradient(ALGORITHMS[name], "fp32")
    brains = []
    fp16 = _gradient(ALGORITHMS[name], "fp16", brain_out=brains)
    assert brains[0].scaler.is_enabled()
    assert brains[0].inner_loss_scale is not None  # scaled by hand
    assert torch.isfinite(fp16).all()
    assert not torch.equal(fp32, fp16 / brains[0].scaler.get_scale())
    fp16 = fp16 / brains[0].scaler.get_scale()
    cosine = torch.nn.functional.cosine_similarity(fp32, fp16, dim=0)
    assert cosine > 0.99, float(cosine)
    assert (fp16 - fp32).norm() / fp32.norm() < 0.05


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_inner_loss_scale_backs_off_and_keeps_the_gradient(name):
    """An overflowing inner scale backs off; the gradient is unchanged.

    The inner scale starts at 2^128 (infinite in float32: every inner
    gradient overflows), the outer GradScaler at 2^100. The task is run
    again at 2^127, 2^126...; nothing is skipped, and with power-of-two
    scales the meta-gradient equals the unscaled one.
    """
    fp32 = _gradient(ALGORITHMS[name], "fp32")
    brains = []
    scaled = _gradient(
        ALGORITHMS[name], "fp32", scales=(2.0**100, 2.0**128), brain_out=brains
    )
    brain = brains[0]
    assert brain.inner_loss_scale <= 2.0**127
    assert brain.inner_loss_scale >= 2.0**100  # no needless back-off
    assert brain.skipped_episodes == 0
    torch.testing.assert_close(scaled, fp32, rtol=1e-5, atol=1e-7)
