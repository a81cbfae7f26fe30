"""Distributed helpers: the process group, and the meta-gradient all-reduce.

SpeechBrain wraps each of a brain's modules in its own
``DistributedDataParallel``, whose hooks average gradients that a forward
*through the wrapper* produced. Meta-gradients are mostly written elsewhere
(functional calls, Reptile's difference, learned update rules), so a
meta-brain averages its gradients itself, before the outer step.

Authors
 * speechbrain-meta developers 2026
"""

import os

import torch


def is_distributed():
    """Whether a process group with more than one process is running.

    Returns
    -------
    bool

    Example
    -------
    >>> is_distributed()
    False
    """
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def world():
    """``(rank, world_size)`` of this process.

    From the process group when one is initialised, else from torchrun's
    ``RANK`` and ``WORLD_SIZE`` environment variables, else ``(0, 1)``.

    Returns
    -------
    tuple of int

    Example
    -------
    >>> world()
    (0, 1)
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def all_reduce_gradients(parameters):
    """Averages the ``.grad`` of these tensors over the process group.

    A tensor without a gradient on this rank takes part with zeros (another
    rank may have one), so every rank ends with the same gradients.
    Nothing happens outside a multi-process group.

    Arguments
    ---------
    parameters : list of torch.Tensor
        The tensors an outer optimiser updates, in the same order on every
        rank.

    Example
    -------
    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> w.grad = torch.full((2,), 3.0)
    >>> all_reduce_gradients([w])  # one process: unchanged
    >>> w.grad
    tensor([3., 3.])
    """
    if not is_distributed():
        return
    world_size = torch.distributed.get_world_size()
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)
        p.grad.div_(world_size)
