"""The N-way K-shot protocol: few-shot classification accuracy.

For keyword spotting and other few-shot classification (Vinyals et al.,
2016; Parnami & Lee, 2020 for KWS), a task is a set of N classes never seen
in training, with K labelled examples of each. ``WayShotProtocol`` fixes,
for each number of ways, seeded episodes: N classes, and for each class a
query of Q examples and an order of its other examples; the K-shot support
is the first K of that order (so supports are nested over K, and every
method sees exactly the same episodes). A method adapts a copy of its
weights to the support with its ``Adaptation`` (with a ``PrototypeHead``
task init, the output layer is made for the episode's N classes first),
then its query predictions are scored. Results: the mean accuracy and its
95 % confidence interval over episodes, per method, ways and shots.

Authors
 * speechbrain-meta developers 2026
"""

import hashlib
import json
import math
import random
import time

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.logger import get_logger

from speechbrain_meta.data.tasks import group_tasks, stable_seed
from speechbrain_meta.evaluation.stats import confidence_interval
from speechbrain_meta.inner import NonFiniteInnerLoss
from speechbrain_meta.modes import modules_in_mode

logger = get_logger(__name__)


def query_accuracy(brain, fast_weights, query):
    """The share of query examples whose top class is their label.

    The recipe's ``compute_forward`` must return class scores (log-probs or
    logits) whose last dimension is the classes, e.g. ``[batch, 1, N]``.

    Arguments
    ---------
    brain : MetaBrain
        The model.
    fast_weights : dict
        The adapted weights.
    query : PaddedBatch
        The query, with its ``way`` labels.

    Returns
    -------
    float
    """
    with modules_in_mode(brain.modules, False), torch.no_grad():
        scores = brain.call_with(
            fast_weights, brain.compute_forward, query, sb.Stage.TEST
        )
    if isinstance(scores, (tuple, list)):
        scores = scores[0]
    predicted = scores.reshape(query.batchsize, -1).argmax(-1).cpu()
    return float((predicted == torch.as_tensor(query.way)).float().mean())


class WayShotProtocol:
    """Fixed N-way K-shot episodes over the classes of a dataset.

    Arguments
    ---------
    dataset : DynamicItemDataset
        The held-out classes' examples (output keys: what the recipe's
        ``compute_forward`` reads, and ``group_by``).
    group_by : str
        The key of an example's class.
    ways : list of int
        Numbers of classes per episode.
    shots : list of int
        Support examples per class (K >= 1).
    episodes : int
        Episodes per number of ways.
    query_per_class : int
        Q, query examples per class.
    seed : int
        Seeds the episodes.
    dataset_name : str
        Written in the results.

    Example
    -------
    >>> data = [{"id": str(i), "word": "abcdef"[i % 6]} for i in range(60)]
    >>> protocol = WayShotProtocol(data, "word", [2, 5], [1, 3], 4, 2)
    >>> support, query = protocol.episode(5, 0, 3)
    >>> len(support), len(query), len(set(support) & set(query))
    (15, 10, 0)
    >>> support[::3] == protocol.episode(5, 0, 1)[0]  # nested over shots
    True
    """

    def __init__(
        self,
        dataset,
        group_by,
        ways,
        shots,
        episodes,
        query_per_class,
        seed=1234,
        dataset_name="",
    ):
        self.dataset = dataset
        self.group_by = group_by
        self.ways = sorted(int(n) for n in ways)
        self.shots = sorted(int(k) for k in shots)
        if not self.shots or self.shots[0] < 1:
            raise ValueError(f"shots must be >= 1, got {shots}")
        self.n_episodes = int(episodes)
        self.query_per_class = int(query_per_class)
        self.seed = int(seed)
        self.dataset_name = dataset_name
        groups, self.skipped_classes = group_tasks(
            dataset,
            group_by,
            min_size=self.query_per_class + max(self.shots),
            who="WayShotProtocol",
        )
        self.classes = list(groups)
        if len(self.classes) < max(self.ways):
            raise ValueError(
                f"WayShotProtocol: {max(self.ways)}-way episodes need "
                f"{max(self.ways)} classes with "
                f"{self.query_per_class + max(self.shots)} examples each; "
                f"{len(self.classes)} have: {self.classes}"
            )
        # Per (ways, episode): the classes in label order, and per class its
        # query then its support order.
        self._episodes = {}
        for n_way in self.ways:
            rng = random.Random(stable_seed(self.seed, n_way, "ways"))
            for e in range(self.n_episodes):
                classes = rng.sample(self.classes, n_way)
                orders = []
                for c in classes:
                    order = sorted(groups[c])
                    rng.shuffle(order)
                    orders.append(order)
                self._episodes[n_way, e] = (classes, orders)
        logger.info("%s episodes: %s", dataset_name, self.protocol_note())

    def episode(self, n_way, index, k):
        """Dataset indices of one episode's support and query.

        Arguments
        ---------
        n_way : int
            Number of classes.
        index : int
            The episode number.
        k : int
            Support examples per class.

        Returns
        -------
        tuple of list of int
            ``(support, query)``, class by class, in label order.
        """
        _, orders = self._episodes[n_way, index]
        q = self.query_per_class
        support = [i for order in orders for i in order[q : q + k]]
        query = [i for order in orders for i in order[:q]]
        return support, query

    def examples(self, n_way, index, indices):
        """The examples at these indices, with their episode labels ``way``.

        Arguments
        ---------
        n_way : int
            Number of classes.
        index : int
            The episode number.
        indices : list of int
            Dataset indices of the episode.

        Returns
        -------
        list of dict
        """
        classes, _ = self._episodes[n_way, index]
        way = {c: n for n, c in enumerate(classes)}
        out = []
        for i in indices:
            example = dict(self.dataset[i])
            example["way"] = way[example[self.group_by]]
            out.append(example)
        return out

    def digest(self):
        """A hash of every episode, to check two runs saw the same ones.

        Returns
        -------
        str
        """
        text = json.dumps(
            [
                self.dataset_name,
                sorted(
                    [list(key), classes, orders]
                    for key, (classes, orders) in self._episodes.items()
                ),
                self.shots,
                self.query_per_class,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def class_sets(self):
        """How many distinct class sets an episode of each size can draw.

        With as many classes as ways (10-way episodes over 10 words) it is
        1: every episode has the same classes, and the confidence interval
        leaves out the variance of the class choice.

        Returns
        -------
        dict
            Ways to the number of class sets.

        Example
        -------
        >>> data = [{"word": "abcdef"[i % 6]} for i in range(60)]
        >>> WayShotProtocol(data, "word", [5, 6], [1], 2, 2).class_sets()
        {5: 6, 6: 1}
        """
        return {n: math.comb(len(self.classes), n) for n in self.ways}

    def protocol_note(self):
        """What the episodes vary over, in words, for the results table.

        Returns
        -------
        str

        Example
        -------
        >>> import textwrap
        >>> data = [{"word": "abcdef"[i % 6]} for i in range(60)]
        >>> protocol = WayShotProtocol(data, "word", [5, 6], [1], 2, 2)
        >>> print(textwrap.fill(protocol.protocol_note(), 60))
        6 classes: 6-way episodes have all 6 (one class set: the 95
        % interval covers the draws of support and query, not the
        choice of classes); class sets drawn from 6 for 5-way.
        """
        fixed = [n for n, sets in self.class_sets().items() if sets == 1]
        text = f"{len(self.classes)} classes"
        if fixed:
            ways = ", ".join(f"{n}-way" for n in fixed)
            text += (
                f": {ways} episodes have all {len(self.classes)} (one class "
                "set: the 95 % interval covers the draws of support and "
                "query, not the choice of classes)"
            )
        others = {n: s for n, s in self.class_sets().items() if s > 1}
        if others:
            sets = ", ".join(f"{s} for {n}-way" for n, s in others.items())
            text += f"{';' if fixed else ':'} class sets drawn from {sets}"
        return text + "."

    def description(self):
        """The ``protocol`` entry of the results.

        Returns
        -------
        dict
        """
        return {
            "dataset": self.dataset_name,
            "group_by": self.group_by,
            "classes": list(self.classes),
            "skipped_classes": dict(self.skipped_classes),
            "ways": list(self.ways),
            "class_sets": self.class_sets(),
            "shots": list(self.shots),
            "episodes": self.n_episodes,
            "query_per_class": self.query_per_class,
            "seed": self.seed,
            "episodes_digest": self.digest(),
        }

    def evaluate(self, brain, method, adaptation=None, score=None):
        """Adapts and scores one method on every episode.

        Arguments
        ---------
        brain : MetaBrain
            The method's model (never changed).
        method : str
            The method's name in the results.
        adaptation : Adaptation, optional
            How it adapts (default: ``brain.own_adaptation()``).
        score : callable, optional
            ``score(brain, fast_weights, query) -> accuracy``; default
            ``query_accuracy``.

        Returns
        -------
        list of dict
            One row per (ways, shots), named as the ASR protocol's rows:
            ``method``, ``n_way``, ``k_shot``, ``accuracy_mean`` and
            ``accuracy_ci95`` (percent), ``n_episodes``, the episode
            accuracies, ``trainable_params`` (adapted weights, the output
            layer at N = ``n_way``), ``adapt_seconds_mean``,
            ``diverged_episodes`` (adaptation diverged: scored as chance,
            1/N) and the adaptation's settings.
        """
        if adaptation is None:
            adaptation = brain.own_adaptation()
        if score is None:
            score = query_accuracy
        inner_loop = adaptation.inner_loop(brain)
        adapted = brain.meta_parameters(inner_loop)
        rows = []
        for n_way in self.ways:
            for k in self.shots:
                accuracies, seconds, diverged = [], [], 0
                for e in range(self.n_episodes):
                    support, query = self.episode(n_way, e, k)
                    start = time.perf_counter()
                    try:
                        fast = adaptation(
                            brain, self.examples(n_way, e, support)
                        )
                    except NonFiniteInnerLoss as err:
                        logger.warning(
                            "%s: %d-way %d-shot episode %d diverged (%s); "
                            "scored as chance",
                            method,
                            n_way,
                            k,
                            e,
                            err,
                        )
                        diverged += 1
                        accuracies.append(1.0 / n_way)
                        continue
                    seconds.append(time.perf_counter() - start)
                    batch = PaddedBatch(self.examples(n_way, e, query))
                    accuracies.append(
                        score(brain, fast, batch.to(brain.device))
                    )
                mean, half = confidence_interval(accuracies)
                trainable = _trainable(brain, adapted, n_way)
                rows.append(
                    {
                        "method": method,
                        "n_way": n_way,
                        "k_shot": k,
                        "accuracy_mean": 100.0 * mean,
                        "accuracy_ci95": None if half is None else 100 * half,
                        "n_episodes": len(accuracies),
                        "episode_accuracies": accuracies,
                        "trainable_params": trainable,
                        "adapt_seconds_mean": (
                            sum(seconds) / len(seconds) if seconds else None
                        ),
                        "diverged_episodes": diverged,
                        "adaptation": adaptation.describe(),
                    }
                )
        return rows


def _trainable(brain, adapted, n_way):
    """Adapted weights in an N-way task: a prototype head has N rows."""
    head = getattr(brain.meta_algorithm, "task_init", None)
    total = sum(p.numel() for p in adapted.values())
    if head is None:
        return total
    module, name = head.locate(brain.modules)
    own = sum(
        p.numel()
        for n, p in adapted.items()
        if n in (f"{name}.weight", f"{name}.bias")
    )
    dim = module.weight.shape[1]
    return total - own + n_way * (dim + 1)


def choose_way_shot_adaptation(protocol, brain, candidates, steps):
    """The adaptation with the best accuracy on meta-dev episodes.

    Every candidate (rule, rate, mode) is tried at every number of steps
    (the method's own rule also at its own number, which may be 0) on the
    same episodes; the best mean accuracy wins, the earlier candidate on a
    tie. Never run on meta-test classes.

    Arguments
    ---------
    protocol : WayShotProtocol
        Meta-dev episodes (one ``ways`` and one ``shots`` value).
    brain : MetaBrain
        The trained method.
    candidates : list of Adaptation
        E.g. from ``candidate_adaptations`` (their ``steps`` are set here).
    steps : list of int
        Numbers of adaptation steps tried.

    Returns
    -------
    tuple
        ``(best Adaptation, list of {"adaptation", "accuracy_mean"})``.
    """
    tried = []
    own_steps = brain.own_adaptation().steps
    for candidate in candidates:
        counts = list(steps)
        if candidate.rule == "own" and own_steps not in counts:
            counts.insert(0, own_steps)
        for n in counts:
            adaptation = candidate.replace(steps=n)
            rows = protocol.evaluate(brain, "search", adaptation)
            tried.append((adaptation, rows[0]["accuracy_mean"]))
            logger.info(
                "meta-dev: %s accuracy %.1f %%", adaptation, tried[-1][1]
            )
    best = max(range(len(tried)), key=lambda i: (tried[i][1], -i))
    report = [
        {"adaptation": a.describe(), "accuracy_mean": acc} for a, acc in tried
    ]
    return tried[best][0], report
