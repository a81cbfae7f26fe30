"""The episodic data loader: a ``TaskSampler`` (or ``WayShotSampler``)
as the DataLoader's batch sampler, checkpointed for intra-epoch resume.

Authors
 * speechbrain-meta developers 2026
"""

import speechbrain as sb

from speechbrain_meta.data.sampler import TaskSampler, WayShotSampler
from speechbrain_meta.distributed import world


class EpisodicLoaderMixin:
    """``make_dataloader`` that draws task episodes when asked to.

    Mixed into ``MetaBrain`` before ``sb.Brain``: loaders without
    ``episodes`` are ``sb.Brain``'s.

    Example
    -------
    >>> import torch
    >>> from speechbrain_meta import MAML, InnerLoop, MetaBrain
    >>> maml = MAML(InnerLoop(inner_steps=2, inner_lr=0.1))
    >>> brain = MetaBrain(modules={"model": torch.nn.Linear(2, 1)},
    ...     meta_algorithm=maml, run_opts={"device": "cpu"})
    >>> data = [{"x": torch.randn(2), "y": torch.randn(1), "task": t % 3}
    ...         for t in range(30)]
    >>> loader = brain.make_dataloader(
    ...     data, sb.Stage.VALID, ckpt_prefix=None,
    ...     episodes={"group_by": "task", "n_support": 2, "n_query": 3,
    ...               "episodes_per_epoch": 4})
    >>> episode = next(iter(loader))
    >>> len(episode.support.x.data), len(episode.query.x.data)
    (2, 3)
    """

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """Creates an episodic DataLoader when episodes are asked for.

        Pass ``episodes={...}`` (``TaskSampler`` arguments: ``group_by``,
        ``n_support``, ``n_query``, ``episodes_per_epoch``, ``seed``, ...)
        or a ready ``TaskSampler`` as ``episodes`` or ``batch_sampler`` in
        the loader kwargs. The rest is Brain's ``make_dataloader``: a
        ``SaveableDataLoader`` registered with the checkpointer, so
        intra-epoch resume fast-forwards the sampler.

        Arguments
        ---------
        dataset : Dataset
            The dataset to draw episodes from.
        stage : sb.Stage
            The stage.
        ckpt_prefix : str, None
            As in ``sb.Brain.make_dataloader``.
        **loader_kwargs : dict
            DataLoader arguments, plus ``episodes``.

        Returns
        -------
        DataLoader
        """
        episodes = loader_kwargs.pop("episodes", None)
        if episodes is None and isinstance(
            loader_kwargs.get("batch_sampler"), TaskSampler
        ):
            episodes = loader_kwargs.pop("batch_sampler")
        if episodes is None:
            return super().make_dataloader(
                dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
            )
        if isinstance(episodes, TaskSampler):
            sampler = episodes
        else:
            options = dict(episodes)
            if stage == sb.Stage.TRAIN:
                rank, world_size = world()
                options.setdefault("rank", rank)
                options.setdefault("world_size", world_size)
            else:
                options.setdefault("fixed_query", True)
            # N-way K-shot classification episodes when `n_way` is given.
            kind = WayShotSampler if "n_way" in options else TaskSampler
            sampler = kind(dataset, **options)
        for key in ("batch_size", "shuffle", "sampler", "drop_last"):
            loader_kwargs.pop(key, None)
        loader_kwargs["batch_sampler"] = sampler
        loader_kwargs.setdefault("collate_fn", sampler.collate_fn())
        if stage == sb.Stage.TRAIN:
            self.train_sampler = sampler
        dataloader = sb.dataio.dataloader.make_dataloader(
            dataset, **loader_kwargs
        )
        if self.checkpointer is not None and ckpt_prefix is not None:
            self.checkpointer.add_recoverable(
                ckpt_prefix + stage.name, dataloader
            )
        return dataloader
