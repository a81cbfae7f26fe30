"""What surrounds every support forward of the inner loop: guarded
normalisation statistics, the twice-differentiable CTC and LSTMs when a
double backward follows, and the cuDNN guard of the other RNNs.

Authors
 * speechbrain-meta developers 2026
"""

import contextlib

from speechbrain_meta.inner import (
    CudnnRNNGuard,
    StatisticsGuard,
)
from speechbrain_meta.losses import differentiable_ctc
from speechbrain_meta.lstm import twice_differentiable_lstms


class SupportForwardMixin:
    """The support-forward context of a ``MetaBrain``.

    Mixed into ``MetaBrain`` before ``sb.Brain``.

    Example
    -------
    >>> import torch
    >>> from speechbrain_meta import MAML, InnerLoop, MetaBrain
    >>> maml = MAML(InnerLoop(inner_steps=2, inner_lr=0.1))
    >>> brain = MetaBrain(modules={"model": torch.nn.Linear(2, 1)},
    ...     meta_algorithm=maml, run_opts={"device": "cpu"})
    >>> bn = torch.nn.BatchNorm1d(2)
    >>> brain.modules["bn"] = bn
    >>> with brain.support_forward_context(True):
    ...     _ = bn(torch.randn(4, 2))
    >>> int(bn.num_batches_tracked)  # the inner loop left the statistics
    0
    """

    @contextlib.contextmanager
    def support_forward_context(self, twice_differentiable):
        """Around every support forward of the inner loop.

        Normalisation statistics are guarded (the inner loop must not update
        them k times per task); when a double backward follows, the CTC loss
        and the LSTMs are the ones with written-out second derivatives
        (``differentiable_ctc``, ``twice_differentiable_lstms``). The other
        RNNs run without cuDNN where its kernels cannot be differentiated
        (``CudnnRNNGuard``). A ``task_init`` runs its support forwards in it
        too.

        Arguments
        ---------
        twice_differentiable : bool
            Whether the forward will be differentiated twice.

        Yields
        ------
        None
        """
        twice = twice_differentiable
        with StatisticsGuard(self.modules), differentiable_ctc(twice):
            with twice_differentiable_lstms(self.modules, twice):
                with self._cudnn_rnn_guard(twice):
                    yield

    def _statistics_replay(self):
        """The normalisation statistics now, to recompute an inner step."""
        snapshot = StatisticsGuard(self.modules).capture()
        return lambda: StatisticsGuard(self.modules, replay=snapshot)

    def _cudnn_rnn_guard(self, double_backward=False):
        """``CudnnRNNGuard`` of the modules on CUDA; nothing elsewhere."""
        if self.device_type != "cuda":
            return contextlib.nullcontext()
        return CudnnRNNGuard(self.modules, double_backward)
