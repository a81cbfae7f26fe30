"""DDP wrapping for meta-learning: each rank keeps plain BatchNorm, so a
task's inner loop normalises that task's batches alone.

Authors
 * speechbrain-meta developers 2026
"""

import torch


class DDPWrappingMixin:
    """``sb.Brain._wrap_distributed`` without the ``SyncBatchNorm``
    conversion (see the method). Mixed into ``MetaBrain`` before ``sb.Brain``.

    Example
    -------
    >>> from speechbrain_meta import MAML, InnerLoop, MetaBrain
    >>> maml = MAML(InnerLoop(inner_steps=2, inner_lr=0.1))
    >>> brain = MetaBrain(modules={"model": torch.nn.Linear(2, 1)},
    ...     meta_algorithm=maml, run_opts={"device": "cpu"})
    >>> brain._wrap_distributed()  # one process: Brain's wrapping
    >>> type(brain.modules.model).__name__
    'Linear'
    """

    def _wrap_distributed(self):
        """Brain's DDP wrapping, without the SyncBatchNorm conversion.

        SpeechBrain converts BatchNorm layers to ``SyncBatchNorm`` under
        ``torchrun``. A meta-brain keeps plain BatchNorm on every device,
        so that each rank's inner loop normalises its own task's batches,
        as one process does: ``SyncBatchNorm`` would normalise a task's
        support with the other ranks' tasks, its backward has no
        derivative (``batch_norm_backward_reduce``/``_elemt``: second
        order would fail), and its collectives inside the inner loop
        would tie the ranks' inner steps together (a rank that runs a task
        again after an fp16 overflow would leave the others waiting). On
        the CPU, ``SyncBatchNorm`` does not run at all. The meta-gradients
        are averaged by ``optimizers_step``. Outside ``torchrun``
        (DataParallel, or one process) this is Brain's wrapping.
        """
        if not self.distributed_launch:
            return super()._wrap_distributed()
        gpu = self.device_type == "cuda" and self.distributed_backend != "gloo"
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = torch.nn.parallel.DistributedDataParallel(
                    module,
                    device_ids=[self.device] if gpu else None,
                    find_unused_parameters=self.find_unused_parameters,
                )
