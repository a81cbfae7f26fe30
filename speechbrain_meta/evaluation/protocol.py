"""The few-shot protocol: fixed episodes, every method adapted and scored.

For each held-out task it fixes a query set and, for a number of seeded
episodes, a permutation of the task's remaining utterances; the k-shot
support set of an episode is the first k of that permutation (so the
supports are nested over k). Every method sees exactly the same episodes:
they depend only on the dataset, the grouping key and the seed, and their
digest is written with the results.

A method is a ``MetaBrain`` (any of this package's brains, or a baseline
wrapped in one with a fine-tuning rule). For every (task, episode, k) it
adapts a copy of its weights to the support set with its own rule
(``adapt_to_task``) for a fixed number of steps, then the query is scored
by a scoring function (default: the recipe's own decoding and error-rate
trackers). Results are the mean and a 95% confidence interval over tasks x
episodes, the trainable (adapted) parameter count and the adaptation time.

Authors
 * speechbrain-meta developers 2026
"""

import hashlib
import json
import random
import time

from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.logger import get_logger

from speechbrain_meta.data.tasks import group_tasks, stable_seed
from speechbrain_meta.evaluation.scoring import recipe_error_rates
from speechbrain_meta.evaluation.stats import confidence_interval
from speechbrain_meta.inner import NonFiniteInnerLoss

logger = get_logger(__name__)


class FewShotProtocol:
    """Fixed few-shot episodes over the tasks of a dataset.

    Arguments
    ---------
    dataset : DynamicItemDataset
        The held-out data; its output keys must be what the recipe's
        ``compute_forward``/``compute_objectives`` read.
    group_by : str
        The key whose value names a task (e.g. ``lang`` or ``spk_id``).
    k_shots : list of int
        Support sizes (0 = score the initialisation as it is).
    episodes_per_task : int
        Seeded episodes per task.
    query_utterances : int
        Size of each task's fixed query set.
    adapt_steps : int
        Adaptation steps for every k > 0 and every method.
    seed : int
        Seeds the query sets and the episodes.
    tasks : list of str, optional
        Restrict to these tasks.
    dataset_name : str
        Written in the results.

    Example
    -------
    >>> data = [{"id": str(i), "task": "ab"[i % 2]} for i in range(40)]
    >>> protocol = FewShotProtocol(data, "task", [0, 1, 5], 3, 10, 5)
    >>> protocol.tasks
    ['a', 'b']
    >>> sup, query = protocol.episode("a", 0, 5)
    >>> len(sup), len(query), len(set(sup) & set(query))
    (5, 10, 0)
    >>> protocol.episode("a", 0, 1)[0] == sup[:1]
    True
    """

    def __init__(
        self,
        dataset,
        group_by,
        k_shots,
        episodes_per_task,
        query_utterances,
        adapt_steps,
        seed=1234,
        tasks=None,
        dataset_name="",
    ):
        self.dataset = dataset
        self.group_by = group_by
        self.k_shots = sorted(int(k) for k in k_shots)
        self.episodes_per_task = int(episodes_per_task)
        self.query_utterances = int(query_utterances)
        self.adapt_steps = int(adapt_steps)
        self.seed = int(seed)
        self.dataset_name = dataset_name
        # A task needs its query set and the largest support set.
        groups, self.skipped_tasks = group_tasks(
            dataset,
            group_by,
            tasks=tasks,
            min_size=self.query_utterances + max(self.k_shots),
            who="FewShotProtocol",
        )
        self.tasks = list(groups)
        self._query = {}
        self._orders = {}
        for task in self.tasks:
            rng = random.Random(stable_seed(self.seed, task, "query"))
            indices = sorted(groups[task])
            rng.shuffle(indices)
            self._query[task] = indices[: self.query_utterances]
            pool = indices[self.query_utterances :]
            orders = []
            for e in range(self.episodes_per_task):
                order = list(pool)
                random.Random(stable_seed(self.seed, task, e)).shuffle(order)
                orders.append(order)
            self._orders[task] = orders

    def episode(self, task, episode_index, k):
        """Dataset indices of one episode's support and query sets.

        Arguments
        ---------
        task : str
            The task.
        episode_index : int
            The episode number.
        k : int
            The support size.

        Returns
        -------
        tuple of list of int
            ``(support, query)``.
        """
        return self._orders[task][episode_index][:k], self._query[task]

    def digest(self):
        """A hash of every episode, to check two runs saw the same ones.

        Returns
        -------
        str
        """
        text = json.dumps(
            [self.dataset_name, self._query, self._orders, self.k_shots]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def description(self):
        """The ``protocol`` entry of ``few_shot_results.json``.

        Returns
        -------
        dict
        """
        return {
            "dataset": self.dataset_name,
            "group_by": self.group_by,
            "tasks": list(self.tasks),
            "skipped_tasks": dict(self.skipped_tasks),
            "episodes_per_task": self.episodes_per_task,
            "k_shots": list(self.k_shots),
            "query_utterances": self.query_utterances,
            "adapt_steps": self.adapt_steps,
            "seed": self.seed,
            "episodes_digest": self.digest(),
        }

    def batch(self, indices, device):
        """The examples at these dataset indices as a ``PaddedBatch``.

        Arguments
        ---------
        indices : list of int
            Dataset indices (e.g. from ``episode``).
        device : str or torch.device
            Where to put the batch.

        Returns
        -------
        PaddedBatch
        """
        return PaddedBatch([self.dataset[i] for i in indices]).to(device)

    def evaluate(
        self, brain, method, score=recipe_error_rates, inner_loop=None
    ):
        """Runs the protocol for one method.

        Arguments
        ---------
        brain : MetaBrain
            Adapts with ``adapt_to_task``.
        method : str
            The method's name in the results.
        score : callable
            ``score(brain, fast_weights, query) -> (cer, wer)``; default:
            the recipe's own decoding and ``ErrorRateStats``
            (``recipe_error_rates``).
        inner_loop : InnerLoop, optional
            The adaptation settings (default: the brain's own).

        Returns
        -------
        list of dict
            One result row per k (the ``few_shot_results.json`` contract,
            see ``results.py``), plus the per-task means and the number of
            episodes whose adaptation diverged (non-finite loss or gradient:
            scored as error rate 1).
        """
        if inner_loop is None:
            inner_loop = brain.inner_loop
        trainable = sum(
            p.numel() for p in brain.meta_parameters(inner_loop).values()
        )
        brain.modules.eval()
        # Each task's query set is the same for every k: read it once.
        queries = {
            task: self.batch(self._query[task], brain.device)
            for task in self.tasks
        }
        rows = []
        for k in self.k_shots:
            cers, wers, seconds, per_task = [], [], [], {}
            diverged = 0
            for task in self.tasks:
                query = queries[task]
                task_cers = []
                for e in range(self.episodes_per_task):
                    if k == 0 and e > 0:
                        # No support: every episode scores the same weights.
                        cers.append(cers[-1])
                        wers.append(wers[-1])
                        task_cers.append(task_cers[-1])
                        continue
                    support_ids = self.episode(task, e, k)[0]
                    support = (
                        self.batch(support_ids, brain.device) if k else None
                    )
                    start = time.perf_counter()
                    try:
                        fast = brain.adapt_to_task(
                            support,
                            inner_steps=self.adapt_steps if k else 0,
                            inner_loop=inner_loop,
                        )
                    except NonFiniteInnerLoss as err:
                        # The method's adaptation diverged on this episode:
                        # it failed it (error rates of 1), and it is counted.
                        logger.warning(
                            "few-shot %s: task %r episode %d k=%d diverged "
                            "(%s); scored as CER = WER = 1",
                            method,
                            task,
                            e,
                            k,
                            err,
                        )
                        diverged += 1
                        cers.append(1.0)
                        wers.append(1.0)
                        task_cers.append(1.0)
                        continue
                    if k:
                        seconds.append(time.perf_counter() - start)
                    cer, wer = score(brain, fast, query)
                    cers.append(cer)
                    wers.append(wer)
                    task_cers.append(cer)
                per_task[task] = sum(task_cers) / len(task_cers)
            cer_mean, cer_ci = confidence_interval(cers)
            wer_mean, wer_ci = confidence_interval(wers)
            row = {
                "method": method,
                "k_shot": k,
                "adapt_steps": self.adapt_steps if k else 0,
                "cer_mean": cer_mean,
                "cer_ci95": cer_ci,
                "wer_mean": wer_mean,
                "wer_ci95": wer_ci,
                "n_tasks": len(self.tasks),
                "n_episodes": len(cers),
                "trainable_params": trainable if k else 0,
                "adapt_seconds_mean": (
                    sum(seconds) / len(seconds) if seconds else 0.0
                ),
                "cer_per_task": per_task,
                "diverged_episodes": diverged,
            }
            logger.info(
                "few-shot %s k=%d: CER %.4f +- %s, WER %.4f (%d episodes)",
                method,
                k,
                cer_mean,
                "n/a" if cer_ci is None else f"{cer_ci:.4f}",
                wer_mean,
                len(cers),
            )
            rows.append(row)
        return rows
