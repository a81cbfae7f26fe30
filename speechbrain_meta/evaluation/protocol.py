"""The few-shot protocol: fixed episodes, every method adapted and scored.

For each held-out task it fixes a query set and, for a number of seeded
episodes, a permutation of the task's remaining utterances; the k-shot
support set of an episode is the first k of that permutation (so the
supports are nested over k). Every method sees exactly the same episodes:
they depend only on the dataset, the grouping key and the seed, and their
digest is written with the results.

A method is a ``MetaBrain`` (any of this package's brains, or a baseline
wrapped in one with a fine-tuning rule) with an ``Adaptation`` (its rule,
rate, steps and normalisation mode: its own, or the best for it on
meta-dev, see ``selection.py``). For every (task, episode, k > 0) it adapts
a copy of its weights to the support set, then the query is scored by a
scoring function (default: the recipe's own decoding and error-rate
trackers); at k = 0 the initialisation is scored once per task. Results
are the mean and a 95% confidence interval over the scored episodes (the
episode scores are kept, so runs of several training seeds pool exactly),
the trainable (adapted) parameter count and the adaptation time.

Authors
 * speechbrain-meta developers 2026
"""

import hashlib
import json
import random
import time

from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.logger import get_logger

from speechbrain_meta.asr import transcript_error_rates
from speechbrain_meta.data.tasks import group_tasks, stable_seed
from speechbrain_meta.evaluation.scoring import recipe_error_rates
from speechbrain_meta.evaluation.stats import summary_row
from speechbrain_meta.inner import NonFiniteInnerLoss
from speechbrain_meta.naming import matches

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
    seed : int
        Seeds the query sets and the episodes.
    tasks : list of str, optional
        Restrict to these tasks.
    dataset_name : str
        Written in the results.

    Example
    -------
    >>> data = [{"id": str(i), "task": "ab"[i % 2]} for i in range(40)]
    >>> protocol = FewShotProtocol(data, "task", [0, 1, 5], 3, 10)
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
        seed=1234,
        tasks=None,
        dataset_name="",
    ):
        self.dataset = dataset
        self.group_by = group_by
        self.k_shots = sorted(int(k) for k in k_shots)
        self.episodes_per_task = int(episodes_per_task)
        self.query_utterances = int(query_utterances)
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
            "seed": self.seed,
            "episodes_digest": self.digest(),
        }

    def examples(self, indices):
        """The dataset's examples at these indices.

        Arguments
        ---------
        indices : list of int
            Dataset indices (e.g. from ``episode``).

        Returns
        -------
        list of dict
        """
        return [self.dataset[i] for i in indices]

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
        return PaddedBatch(self.examples(indices)).to(device)

    def queries(self, device):
        """Each task's query set, read once: task to ``PaddedBatch``.

        Arguments
        ---------
        device : str or torch.device
            Where to put the batches.

        Returns
        -------
        dict
        """
        return {t: self.batch(self._query[t], device) for t in self.tasks}

    def evaluate(self, brain, method, adaptation=None, score=None):
        """Runs the protocol for one method.

        Arguments
        ---------
        brain : MetaBrain
            The method's model (never changed).
        method : str
            The method's name in the results.
        adaptation : Adaptation, optional
            How it adapts (default: ``brain.own_adaptation()``).
        score : callable, optional
            ``score(brain, fast_weights, query) -> (cer, wer)`` or
            ``(cer, wer, bleu)``; default: the recipe's own decoding,
            ``ErrorRateStats`` and, for a translation, ``BLEUStats``
            (``recipe_error_rates``).

        Returns
        -------
        list of dict
            One result row per k (the ``few_shot_results.json`` contract,
            see ``results.py``): the adaptation's settings, the episode
            scores, the per-task means and the number of episodes whose
            adaptation diverged (non-finite loss or gradient: scored as
            error rate 1).
        """
        if adaptation is None:
            adaptation = brain.own_adaptation()
        if score is None:
            score = recipe_error_rates
        inner_loop = adaptation.inner_loop(brain)
        trainable = sum(
            p.numel() for p in brain.meta_parameters(inner_loop).values()
        )
        brain.modules.eval()
        queries = self.queries(brain.device)
        return self._run(
            method,
            adapt=lambda support: adaptation(brain, support),
            score=lambda fast, task: score(brain, fast, queries[task]),
            settings=adaptation.describe(),
            trainable=trainable,
        )

    def evaluate_interface(self, asr, method, unsupervised=False):
        """Runs the protocol through an ``AdaptiveASR``, as a user would.

        Each support set goes to ``asr.adapt(wavs, transcripts)`` (the
        model's exported adaptation, validated by default) and each query
        set to ``asr.transcribe_batch`` with the task state it returned.

        Arguments
        ---------
        asr : speechbrain_meta.inference.AdaptiveASR
            The exported model.
        method : str
            The method's name in the results.
        unsupervised : bool
            The support's audio alone goes to ``asr.adapt(wavs)`` (its
            ``unsupervised_adaptation``); the transcripts score the query.

        Returns
        -------
        list of dict
            As ``evaluate``; each row with k > 0 also counts the episodes
            where the adaptation abstained (``abstained_episodes``).
        """
        queries = {t: self.examples(self._query[t]) for t in self.tasks}
        abstained = []

        def adapt(support):
            if not support:
                return None
            transcripts = None if unsupervised else [u["wrd"] for u in support]
            state = asr.adapt(
                [u["sig"] for u in support],
                transcripts,
                unsupervised=unsupervised,
            )
            abstained.append(state.info["abstained"])
            return state

        def count_abstentions(row):
            row["abstained_episodes"] = sum(abstained) if row["k_shot"] else 0
            abstained.clear()

        adaptation = (
            asr.unsupervised_adaptation if unsupervised else (asr.adaptation)
        )
        patterns = adaptation.adapt_params or asr.hparams.adapt_params
        return self._run(
            method,
            adapt=adapt,
            score=lambda state, task: asr.error_rates(queries[task], state),
            settings=adaptation.describe(),
            trainable=sum(
                p.numel()
                for name, p in asr.mods.named_parameters()
                if matches(name, patterns)
            ),
            on_k_done=count_abstentions,
        )

    def evaluate_each_utterance(self, asr, method):
        """Episodic adaptation: each query utterance adapted to alone.

        Every query utterance of every task goes to
        ``asr.transcribe_adapting`` (the model's adaptation without
        transcripts for one utterance, on that utterance only, then its
        transcript; the base model for the next); scored as the k = 0 row
        is.

        Arguments
        ---------
        asr : speechbrain_meta.inference.AdaptiveASR
            The exported model.
        method : str
            The method's name in the results.

        Returns
        -------
        dict
            A result row (``k_shot`` 0, ``adaptation`` per utterance) with
            ``collapsed_utterances``: the adapted transcripts the guard
            threw away, and ``unadapted_cer_per_task`` /
            ``unadapted_cer_mean``: the unadapted model on each utterance
            alone, the baseline of this row.
        """
        cers, wers, per_task, seconds, collapsed = [], [], {}, [], 0
        alone = {}  # the unadapted model on each utterance alone
        for task in self.tasks:
            adapted, unadapted, refs = [], [], []
            for u in self.examples(self._query[task]):
                start = time.perf_counter()
                text, info = asr.transcribe_adapting(u["sig"])
                seconds.append(time.perf_counter() - start)
                collapsed += not info["kept"]
                adapted.append(text)
                unadapted.append(info["unadapted"])
                refs.append(u["wrd"])
            cer, wer = transcript_error_rates(adapted, refs)
            cers.append(cer)
            wers.append(wer)
            per_task[task] = cer
            alone[task] = transcript_error_rates(unadapted, refs)[0]
        settings = dict(asr.each_utterance_adaptation().describe())
        settings["per_utterance"] = True
        row = summary_row(
            method,
            0,
            cers,
            wers,
            adaptation=settings,
            n_tasks=len(self.tasks),
            trainable_params=0,
            adapt_seconds=seconds,
            cer_per_task=per_task,
            diverged_episodes=0,
        )
        row["collapsed_utterances"] = collapsed
        # Its own baseline: a model that attends to padding (an RNN over
        # padded frames) transcribes an utterance alone differently from
        # the k = 0 row's padded batch; this one differs by adaptation only.
        row["unadapted_cer_per_task"] = alone
        row["unadapted_cer_mean"] = sum(alone.values()) / len(alone)
        return row

    def _run(self, method, adapt, score, settings, trainable, on_k_done=None):
        """The protocol's loop: adapt on every support, score every query.

        ``adapt(support) -> state`` (weights or a task state) and
        ``score(state, task) -> (cer, wer)``, or ``(cer, wer, bleu)`` for a
        translation (BLEU as a fraction); ``on_k_done(row)`` is called with
        each k's row.
        """
        rows = []
        for k in self.k_shots:
            cers, wers, bleus, seconds, per_task = [], [], [], [], {}
            diverged = 0
            for task in self.tasks:
                task_cers = []
                # No support: one score per task (every episode is alike).
                for e in range(self.episodes_per_task if k else 1):
                    support = self.examples(self.episode(task, e, k)[0])
                    start = time.perf_counter()
                    try:
                        state = adapt(support)
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
                        scores = (1.0, 1.0, 0.0)  # BLEU 0, if scored
                    else:
                        if k:
                            seconds.append(time.perf_counter() - start)
                        scores = score(state, task)
                    cer, wer = scores[:2]
                    cers.append(cer)
                    wers.append(wer)
                    bleus.extend(scores[2:3])  # a translation's BLEU
                    task_cers.append(cer)
                per_task[task] = sum(task_cers) / len(task_cers)
            row = summary_row(
                method,
                k,
                cers,
                wers,
                adaptation=settings if k else None,
                n_tasks=len(self.tasks),
                trainable_params=trainable if k else 0,
                adapt_seconds=seconds,
                cer_per_task=per_task,
                diverged_episodes=diverged,
                bleus=bleus if len(bleus) == len(cers) else None,
            )
            if on_k_done is not None:
                on_k_done(row)
            rows.append(row)
        return rows
