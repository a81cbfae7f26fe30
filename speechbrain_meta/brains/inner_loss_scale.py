"""fp16 training's loss scale for the inner gradients, which the
GradScaler never sees (they are taken with ``torch.autograd.grad``).

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


class InnerLossScaleMixin:
    """A dynamic loss scale of the inner gradients under fp16.

    ``MetaBrain.__init__`` creates its state (``inner_loss_scale``, checkpointed
    with the meta counters). Mixed into ``MetaBrain`` before ``sb.Brain``.

    Example
    -------
    >>> import torch
    >>> from speechbrain_meta import MAML, InnerLoop, MetaBrain
    >>> maml = MAML(InnerLoop(inner_steps=2, inner_lr=0.1))
    >>> brain = MetaBrain(modules={"model": torch.nn.Linear(2, 1)},
    ...     meta_algorithm=maml, run_opts={"device": "cpu"})
    >>> brain._inner_loss_scale()  # no fp16: no scaling
    1.0
    """

    def _inner_loss_scale(self):
        """The manual fp16 loss scale of the inner gradients; 1 otherwise.

        The inner ``autograd.grad`` is scaled by hand (GradScaler only sees
        the outer backward). It has its own dynamic scale, as GradScaler
        keeps one for the outer step: it starts at the GradScaler's,
        halves on an overflow of the inner gradients (the task is run
        again, see ``run_inner_loop``) and doubles after
        ``growth_interval`` clean adaptations. The outer scale is left
        alone: gradients already accumulated in the meta-batch are scaled
        by it.
        """
        if not self.scaler.is_enabled():
            return 1.0
        if self.inner_loss_scale is None:
            self.inner_loss_scale = float(self.scaler.get_scale())
        return self.inner_loss_scale

    def _inner_scale_backoff(self, scale, err):
        self.inner_loss_scale = scale * self.scaler.get_backoff_factor()
        self._inner_scale_streak = 0
        logger.info(
            "fp16 inner gradients overflowed (%s) at loss scale %g: "
            "retrying the task at %g",
            err,
            scale,
            self.inner_loss_scale,
        )

    def _inner_scale_growth(self, scale):
        if not self.scaler.is_enabled():
            return
        self._inner_scale_streak += 1
        if self._inner_scale_streak >= self.scaler.get_growth_interval():
            self.inner_loss_scale = scale * self.scaler.get_growth_factor()
            self._inner_scale_streak = 0
