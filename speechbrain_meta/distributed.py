"""Distributed helpers: the process group, and the meta-gradient all-reduce.

SpeechBrain wraps each of a brain's modules in its own
``DistributedDataParallel``, whose hooks average gradients that a forward
*through the wrapper* produced. Meta-gradients are mostly written elsewhere
(functional calls, Reptile's difference, learned update rules), so a
meta-brain averages its gradients itself, before the outer step.

Authors
 * speechbrain-meta developers 2026
"""

import atexit
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


def init_process_group(run_opts):
    """SpeechBrain's ``ddp_init_group``, once per process.

    Under ``torchrun`` (``RANK`` and ``LOCAL_RANK`` set) it joins the
    process group with ``run_opts["distributed_backend"]``; otherwise, or
    when the group exists already (a driver running several recipes in one
    process), nothing happens. Every training script calls it first, as
    upstream's recipes call ``ddp_init_group``. A group joined here is
    left at interpreter exit (``destroy_process_group``): a gloo group
    still alive while Python tears down can abort the process ("terminate
    called without an active exception") after a successful run.

    Arguments
    ---------
    run_opts : dict
        SpeechBrain's run options (``sb.parse_arguments``).

    Example
    -------
    >>> init_process_group({"device": "cpu"})  # no torchrun: nothing
    >>> is_distributed()
    False
    """
    from speechbrain.utils.distributed import ddp_init_group

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    ddp_init_group({"distributed_backend": "nccl", **run_opts})
    if torch.distributed.is_initialized():
        atexit.register(leave_process_group)


def leave_process_group():
    """Destroys the default process group, if one is running.

    Registered with ``atexit`` by :func:`init_process_group`; a script may
    also call it when its distributed work is done.

    Example
    -------
    >>> leave_process_group()  # no group: nothing
    >>> torch.distributed.is_initialized()
    False
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def all_reduce_gradients(parameters, bucket_mb=25.0):
    """Averages the ``.grad`` of these tensors over the process group.

    The gradients are flattened into buckets of about ``bucket_mb`` MiB
    per dtype and device (DDP's default size), one collective per bucket
    rather than per tensor. A tensor without a gradient on this rank takes
    part with zeros (another rank may have one), so every rank ends with
    the same gradients. Nothing happens outside a multi-process group.

    Arguments
    ---------
    parameters : list of torch.Tensor
        The tensors an outer optimiser updates, in the same order on every
        rank.
    bucket_mb : float
        Bucket size in MiB.

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
    for bucket in gradient_buckets(parameters, bucket_mb):
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        torch.distributed.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for p in bucket:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def gradient_buckets(parameters, bucket_mb=25.0):
    """Groups tensors into buckets for a flattened all-reduce.

    Tensors without ``.grad`` get a zero one. A bucket holds tensors of one
    dtype and device, in the given order, up to about ``bucket_mb`` MiB (a
    larger tensor is a bucket of its own).

    Arguments
    ---------
    parameters : list of torch.Tensor
        The tensors, in the same order on every rank.
    bucket_mb : float
        Bucket size in MiB.

    Returns
    -------
    list of list of torch.Tensor

    Example
    -------
    >>> ps = [torch.nn.Parameter(torch.ones(n)) for n in (3, 3, 1)]
    >>> [len(b) for b in gradient_buckets(ps, bucket_mb=24 / 2**20)]
    [2, 1]
    """
    limit = bucket_mb * 2**20
    buckets, open_buckets = [], {}
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        key = (p.grad.dtype, p.grad.device)
        size = p.grad.numel() * p.grad.element_size()
        bucket = open_buckets.get(key)
        if bucket is None or bucket[1] + size > limit:
            bucket = [[], 0]
            open_buckets[key] = bucket
            buckets.append(bucket[0])
        bucket[0].append(p)
        bucket[1] += size
    return buckets
