"""TaskSampler: a batch sampler that yields one task episode per batch.

Authors
 * speechbrain-meta developers 2026
"""

import random

from speechbrain.utils.logger import get_logger
from torch.utils.data import Sampler

from speechbrain_meta.data.episode import EpisodeCollate
from speechbrain_meta.data.tasks import group_tasks

logger = get_logger(__name__)


class TaskSampler(Sampler):
    """Draws episodes: K support and Q query utterances of one task.

    Utterances are grouped into tasks by a key of the dataset (``spk_id``,
    ``lang``, ``accent``, ...). Each batch it yields is the list of dataset
    indices of one episode, the K support utterances first, then the Q query
    utterances, all distinct. Use it as the DataLoader's ``batch_sampler``
    with ``collate_fn=sampler.collate_fn()``, or pass its arguments to a
    ``MetaBrain`` as ``episodes=`` in the loader kwargs.

    The episodes of an epoch depend only on ``seed`` and the epoch
    (``set_epoch``), so SpeechBrain's ``SaveableDataLoader`` can fast-forward
    to a mid-epoch position after a restart. Under DDP (``world_size`` > 1),
    every global step draws ``world_size`` distinct tasks (when there are
    that many) and each rank takes its own.

    Tasks are defined by ``speechbrain_meta.data.tasks.group_tasks``: tasks
    with fewer than K + Q utterances cannot make an episode and are skipped
    (their number logged once); if none is left, or ``tasks`` names one the
    data does not have, a ``ValueError`` says what was asked for.

    Arguments
    ---------
    dataset : DynamicItemDataset
        The dataset (possibly filtered/sorted).
    group_by : str
        The key that names the task of an utterance.
    n_support : int
        K, support utterances per episode (may be 0).
    n_query : int
        Q, query utterances per episode.
    episodes_per_epoch : int
        Number of episodes each rank yields per epoch.
    seed : int
        Base seed.
    tasks : list of str, optional
        Restrict sampling to these tasks (each must exist).
    fixed_query : bool
        If True, each task's query set is the same fixed Q utterances every
        episode (drawn once with ``seed``) and the support set is drawn from
        the rest: the evaluation protocol.
    rank : int
        This process's rank under DDP.
    world_size : int
        Number of DDP processes.

    Example
    -------
    >>> data = [{"spk_id": s} for s in "aaaabbbbbc"]
    >>> sampler = TaskSampler(data, "spk_id", n_support=2, n_query=1,
    ...                       episodes_per_epoch=3, seed=0)
    >>> sampler.tasks, sampler.skipped_tasks
    (['a', 'b'], {'c': 1})
    >>> episodes = list(sampler)
    >>> len(episodes), [len(e) for e in episodes]
    (3, [3, 3, 3])
    >>> all(len({data[i]["spk_id"] for i in e}) == 1 for e in episodes)
    True
    >>> episodes == list(sampler)  # deterministic for an epoch
    True
    """

    def __init__(
        self,
        dataset,
        group_by="spk_id",
        n_support=5,
        n_query=5,
        episodes_per_epoch=100,
        seed=1234,
        tasks=None,
        fixed_query=False,
        rank=0,
        world_size=1,
    ):
        if n_support < 0 or n_query < 0 or n_support + n_query == 0:
            raise ValueError(
                f"Bad episode size: n_support={n_support}, n_query={n_query}"
            )
        if episodes_per_epoch < 1:
            raise ValueError("episodes_per_epoch must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in world of size {world_size}")
        self.group_by = group_by
        self.n_support = int(n_support)
        self.n_query = int(n_query)
        self.episodes_per_epoch = int(episodes_per_epoch)
        self.seed = int(seed)
        self.fixed_query = bool(fixed_query)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0

        self.groups, self.skipped_tasks = group_tasks(
            dataset,
            group_by,
            tasks=tasks,
            min_size=self.n_support + self.n_query,
            who="TaskSampler",
        )
        self.tasks = list(self.groups)
        # With a fixed query, each task's query set and the support pool
        # (the rest) are drawn once here.
        self._fixed_queries = {}
        self._support_pools = {}
        if self.fixed_query:
            rng = random.Random(self.seed)
            for task in self.tasks:
                query = rng.sample(self.groups[task], self.n_query)
                chosen = set(query)
                self._fixed_queries[task] = query
                self._support_pools[task] = [
                    i for i in self.groups[task] if i not in chosen
                ]

    def set_epoch(self, epoch):
        """Selects the epoch, which seeds the episodes drawn.

        Arguments
        ---------
        epoch : int
            The epoch number.
        """
        self.epoch = int(epoch)

    def __len__(self):
        return self.episodes_per_epoch

    def collate_fn(self, **padded_batch_kwargs):
        """The collate function matching this sampler.

        Arguments
        ---------
        **padded_batch_kwargs : dict
            Passed to each ``PaddedBatch``.

        Returns
        -------
        EpisodeCollate
        """
        return EpisodeCollate(
            self.n_support, task_key=self.group_by, **padded_batch_kwargs
        )

    def episode(self, task, rng):
        """Draws one episode of a task.

        Arguments
        ---------
        task : str
            The task.
        rng : random.Random
            The random generator to draw with.

        Returns
        -------
        list of int
            Support indices, then query indices.
        """
        if self.fixed_query:
            support = rng.sample(self._support_pools[task], self.n_support)
            return support + list(self._fixed_queries[task])
        return rng.sample(self.groups[task], self.n_support + self.n_query)

    def __iter__(self):
        rng = random.Random(f"{self.seed}-{self.epoch}")
        for _ in range(self.episodes_per_epoch):
            # Every rank draws the same global step, then keeps its own task.
            if len(self.tasks) >= self.world_size:
                step_tasks = rng.sample(self.tasks, self.world_size)
            else:
                step_tasks = [
                    rng.choice(self.tasks) for _ in range(self.world_size)
                ]
            episodes = [self.episode(t, rng) for t in step_tasks]
            yield episodes[self.rank]


class WayShotSampler(TaskSampler):
    """N-way K-shot episodes: K support and Q query examples of N classes.

    The few-shot classification episode (Vinyals et al., 2016): each
    episode draws N classes (``group_by`` names an example's class), then
    K + Q distinct examples of each; the support is the N x K first, the
    query the N x Q others. The episode's labels are the classes' positions
    in a random order (``collate_fn`` writes them as ``way``), so a model
    cannot memorise classes across episodes. Epochs, seeding, resume and
    DDP work as in ``TaskSampler`` (under DDP every rank draws its own
    episode of each global step). With ``fixed_query`` (validation) the
    episodes do not change from epoch to epoch.

    Arguments
    ---------
    dataset : DynamicItemDataset
        The dataset.
    group_by : str
        The key of an example's class.
    n_way : int
        N, classes per episode.
    n_support : int
        K, support examples per class.
    n_query : int
        Q, query examples per class.
    episodes_per_epoch : int
        Episodes each rank yields per epoch.
    seed : int
        Base seed.
    tasks : list of str, optional
        Restrict to these classes (each must exist).
    fixed_query : bool
        The same episodes every epoch.
    rank : int
        This process's rank under DDP.
    world_size : int
        Number of DDP processes.

    Example
    -------
    >>> data = [{"word": w} for w in "aaabbbcccdd"]
    >>> sampler = WayShotSampler(data, "word", n_way=2, n_support=1,
    ...                          n_query=2, episodes_per_epoch=4, seed=0)
    >>> sampler.tasks, sampler.skipped_tasks
    (['a', 'b', 'c'], {'d': 2})
    >>> episode = next(iter(sampler))
    >>> [data[i]["word"] for i in episode]  # support, then query
    ['b', 'a', 'b', 'b', 'a', 'a']
    """

    def __init__(
        self,
        dataset,
        group_by="label",
        n_way=5,
        n_support=1,
        n_query=15,
        episodes_per_epoch=100,
        seed=1234,
        tasks=None,
        fixed_query=False,
        rank=0,
        world_size=1,
    ):
        super().__init__(
            dataset,
            group_by,
            n_support,
            n_query,
            episodes_per_epoch,
            seed,
            tasks=tasks,
            rank=rank,
            world_size=world_size,
        )
        self.n_way = int(n_way)
        self.fixed_query = bool(fixed_query)
        if not 2 <= self.n_way <= len(self.tasks):
            raise ValueError(
                f"WayShotSampler: {self.n_way}-way episodes need at least "
                f"{self.n_way} classes with {self.n_support + self.n_query} "
                f"examples each; {len(self.tasks)} have: {self.tasks}"
            )

    def collate_fn(self, **padded_batch_kwargs):
        """The collate function: episodes with their ``way`` labels.

        Arguments
        ---------
        **padded_batch_kwargs : dict
            Passed to each ``PaddedBatch``.

        Returns
        -------
        EpisodeCollate
        """
        return EpisodeCollate(
            self.n_way * self.n_support,
            label_key=self.group_by,
            **padded_batch_kwargs,
        )

    def episode(self, classes, rng):
        """Draws one episode of these classes.

        Arguments
        ---------
        classes : list of str
            The N classes, in the order of their labels.
        rng : random.Random
            The random generator to draw with.

        Returns
        -------
        list of int
            Support indices (class by class), then query indices.
        """
        drawn = [
            rng.sample(self.groups[c], self.n_support + self.n_query)
            for c in classes
        ]
        support = [i for d in drawn for i in d[: self.n_support]]
        query = [i for d in drawn for i in d[self.n_support :]]
        return support + query

    def __iter__(self):
        epoch = 0 if self.fixed_query else self.epoch
        rng = random.Random(f"{self.seed}-{epoch}-ways")
        for _ in range(self.episodes_per_epoch):
            episodes = [
                self.episode(rng.sample(self.tasks, self.n_way), rng)
                for _ in range(self.world_size)
            ]
            yield episodes[self.rank]
