"""Episodes: one task's support and query batches.

A ``TaskSampler`` yields the indices of one task's support utterances
followed by its query utterances. ``EpisodeCollate`` turns the fetched
examples into an ``Episode`` holding two SpeechBrain ``PaddedBatch``es, so
that a recipe's ``compute_forward(batch, stage)`` receives an ordinary
``PaddedBatch`` for each.

Authors
 * speechbrain-meta developers 2026
"""

from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


class Episode:
    """One task: a support batch to adapt on, a query batch to score.

    Arguments
    ---------
    support : PaddedBatch or None
        The K adaptation utterances (None when K = 0).
    query : PaddedBatch or None
        The Q evaluation utterances.
    task : str, optional
        The task identifier (speaker, language, ...).

    Example
    -------
    >>> ex = [{"id": str(i), "x": torch.ones(i + 1)} for i in range(3)]
    >>> ep = Episode(PaddedBatch(ex[:1]), PaddedBatch(ex[1:]), task="spk1")
    >>> ep.query.x.data.shape
    torch.Size([2, 3])
    >>> ep
    Episode(task='spk1', support=1, query=2)
    """

    def __init__(self, support, query, task=None):
        self.support = support
        self.query = query
        self.task = task

    def to(self, *args, **kwargs):
        """Moves both batches (``PaddedBatch.to`` semantics).

        Arguments
        ---------
        *args : tuple
            Passed to ``PaddedBatch.to``.
        **kwargs : dict
            Passed to ``PaddedBatch.to``.

        Returns
        -------
        Episode
            self, for chaining.
        """
        if self.support is not None:
            self.support = self.support.to(*args, **kwargs)
        if self.query is not None:
            self.query = self.query.to(*args, **kwargs)
        return self

    def pin_memory(self):
        """Pins both batches (called by the DataLoader with pin_memory).

        Returns
        -------
        Episode
            self.
        """
        if self.support is not None:
            self.support = self.support.pin_memory()
        if self.query is not None:
            self.query = self.query.pin_memory()
        return self

    @property
    def n_support(self):
        """Number of support utterances."""
        return 0 if self.support is None else self.support.batchsize

    @property
    def n_query(self):
        """Number of query utterances."""
        return 0 if self.query is None else self.query.batchsize

    @property
    def ids(self):
        """The utterance ids of the support and query sets, if known."""
        out = []
        for batch in (self.support, self.query):
            ids = getattr(batch, "id", None) if batch is not None else None
            if ids is not None:
                out.extend(ids)
        return out

    def __repr__(self):
        return (
            f"Episode(task={self.task!r}, support={self.n_support}, "
            f"query={self.n_query})"
        )


class EpisodeCollate:
    """Collates a list of examples, support first, into an ``Episode``.

    Arguments
    ---------
    n_support : int
        How many of the examples (the first ones) form the support set.
    task_key : str, optional
        If the examples carry this key, its value names the task.
    label_key : str, optional
        For N-way classification episodes: the key of each example's class.
        The episode's classes are numbered ``0 .. N-1`` in the order they
        first appear (support first; a sampler shuffles them, so the
        numbering changes from episode to episode), each example gets its
        number as ``way``, and the task is named by the classes in that
        order, joined by ``+``.
    **padded_batch_kwargs : dict
        Passed to each ``PaddedBatch``.

    Example
    -------
    >>> collate = EpisodeCollate(n_support=2, task_key="spk_id")
    >>> ex = [{"id": str(i), "spk_id": "a", "x": torch.ones(2)}
    ...       for i in range(5)]
    >>> collate(ex)
    Episode(task='a', support=2, query=3)
    >>> ways = EpisodeCollate(n_support=2, label_key="word")
    >>> ex = [{"id": str(i), "word": w} for i, w in enumerate("yxyx")]
    >>> episode = ways(ex)
    >>> episode.task, episode.support.way, episode.query.way
    ('y+x', tensor([0, 1]), tensor([0, 1]))
    """

    def __init__(
        self, n_support, task_key=None, label_key=None, **padded_batch_kwargs
    ):
        self.n_support = int(n_support)
        self.task_key = task_key
        self.label_key = label_key
        self.padded_batch_kwargs = padded_batch_kwargs

    def __call__(self, examples):
        """Builds the episode.

        Arguments
        ---------
        examples : list of dict
            The fetched examples, support first.

        Returns
        -------
        Episode
        """
        task = None
        if self.task_key is not None and examples:
            task = examples[0].get(self.task_key)
        if self.label_key is not None:
            classes = list(dict.fromkeys(ex[self.label_key] for ex in examples))
            way = {label: n for n, label in enumerate(classes)}
            examples = [
                {**ex, "way": way[ex[self.label_key]]} for ex in examples
            ]
            task = "+".join(map(str, classes))
        support = examples[: self.n_support]
        query = examples[self.n_support :]
        return Episode(
            PaddedBatch(support, **self.padded_batch_kwargs)
            if support
            else None,
            PaddedBatch(query, **self.padded_batch_kwargs) if query else None,
            task=task,
        )
