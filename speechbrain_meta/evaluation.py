"""The few-shot evaluation protocol, shared by every method and recipe.

For each held-out task it fixes a query set and, for a number of seeded
episodes, a permutation of the task's remaining utterances; the k-shot
support set of an episode is the first k of that permutation (so the
supports are nested over k). Every method sees exactly the same episodes:
they depend only on the dataset, the grouping key and the seed, and their
digest is written with the results.

A method is a ``MetaBrain`` (any of this package's brains, or a baseline
wrapped in one with a fine-tuning rule). For every (task, episode, k) it
adapts a copy of its weights to the support set with its own rule
(``adapt_to_task``) for a fixed number of steps, then decodes the query
through the recipe's ``compute_objectives`` at ``Stage.TEST``, which fills
the recipe's ``cer_metric`` and ``wer_metric`` (``ErrorRateStats``, reset
by the recipe's ``on_stage_start``). Results are the mean and a 95%
confidence interval over tasks x episodes, the trainable (adapted)
parameter count and the adaptation time; they are written as
``few_shot_results.json``, a markdown table and a PNG plot.

Authors
 * speechbrain-meta developers 2026
"""

import hashlib
import json
import math
import os
import random
import time
from collections import OrderedDict

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.logger import get_logger

from speechbrain_meta.data.sampler import _group_key_values
from speechbrain_meta.inner import NonFiniteInnerLoss

logger = get_logger(__name__)

RESULTS_JSON = "few_shot_results.json"
RESULTS_MD = "few_shot_results.md"
RESULTS_PNG = "few_shot_cer.png"


def confidence_interval(values, confidence=0.95):
    """Mean and Student-t confidence half-width of a sample.

    Arguments
    ---------
    values : list of float
        The sample.
    confidence : float
        The two-sided confidence level.

    Returns
    -------
    tuple
        ``(mean, half_width)``; the half-width is None for fewer than two
        values.

    Example
    -------
    >>> mean, half = confidence_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> mean, round(half, 4)
    (3.0, 1.9632)
    """
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("confidence_interval of an empty sample")
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    return mean, t * math.sqrt(var / n)


def _stable_seed(*keys):
    digest = hashlib.sha256("/".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


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
        groups = OrderedDict()
        for index, value in enumerate(_group_key_values(dataset, group_by)):
            groups.setdefault(str(value), []).append(index)
        if tasks is not None:
            missing = {str(t) for t in tasks} - set(groups)
            if missing:
                raise ValueError(
                    f"FewShotProtocol: tasks {sorted(missing)} not found by "
                    f"{group_by!r} (found {sorted(groups)})"
                )
            groups = OrderedDict((str(t), groups[str(t)]) for t in tasks)
        need = self.query_utterances + max(self.k_shots)
        self.skipped_tasks = {
            t: len(v) for t, v in groups.items() if len(v) < need
        }
        for task, size in self.skipped_tasks.items():
            logger.warning(
                "FewShotProtocol: task %r skipped: %d utterances, needs %d "
                "(%d query + k up to %d)",
                task,
                size,
                need,
                self.query_utterances,
                max(self.k_shots),
            )
        self.tasks = sorted(t for t in groups if t not in self.skipped_tasks)
        if not self.tasks:
            raise ValueError(
                f"FewShotProtocol: no task has the {need} utterances needed "
                f"(sizes: {dict(self.skipped_tasks)})"
            )
        self._query = {}
        self._orders = {}
        for task in self.tasks:
            rng = random.Random(_stable_seed(self.seed, task, "query"))
            indices = sorted(groups[task])
            rng.shuffle(indices)
            self._query[task] = indices[: self.query_utterances]
            pool = indices[self.query_utterances :]
            orders = []
            for e in range(self.episodes_per_task):
                order = list(pool)
                random.Random(_stable_seed(self.seed, task, e)).shuffle(order)
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

    def evaluate(self, brain, method):
        """Runs the protocol for one method.

        Arguments
        ---------
        brain : MetaBrain
            Adapts with ``adapt_to_task`` and scores with the recipe's
            ``compute_objectives`` at ``Stage.TEST`` (which must fill
            ``brain.cer_metric`` and ``brain.wer_metric``).
        method : str
            The method's name in the results.

        Returns
        -------
        list of dict
            One result row per k (see ``../shared/DESIGN.md``), plus the
            per-task means and the number of episodes whose adaptation
            diverged (non-finite loss or gradient: scored as error rate 1).
        """
        inner_loop = brain.meta_algorithm.inner_loop
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
                            support, inner_steps=self.adapt_steps if k else 0
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
                    cer, wer = self._score(brain, fast, query)
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

    @staticmethod
    def _score(brain, fast_weights, query):
        """CER and WER (fractions) of the query with the given weights."""
        brain.on_stage_start(sb.Stage.TEST, None)
        with torch.no_grad(), brain.evaluation_ctx:
            brain.task_loss(fast_weights, query, sb.Stage.TEST)
        cer = brain.cer_metric.summarize("error_rate") / 100.0
        wer = brain.wer_metric.summarize("error_rate") / 100.0
        return float(cer), float(wer)


def write_results(output_folder, protocol, rows, title=None):
    """Writes the JSON, the markdown table and the PNG plot.

    Arguments
    ---------
    output_folder : str
        Where to write ``few_shot_results.{json,md}`` and ``few_shot_cer.png``.
    protocol : dict
        ``FewShotProtocol.description()``.
    rows : list of dict
        Result rows of one or more methods.
    title : str, optional
        Heading of the table and plot.

    Returns
    -------
    dict
        The JSON document.

    Example
    -------
    >>> import tempfile
    >>> row = {"method": "joint", "k_shot": 0, "adapt_steps": 0,
    ...        "cer_mean": 0.5, "cer_ci95": 0.1, "wer_mean": 0.9,
    ...        "wer_ci95": 0.1, "n_tasks": 2, "n_episodes": 4,
    ...        "trainable_params": 0, "adapt_seconds_mean": 0.0}
    >>> doc = write_results(tempfile.mkdtemp(), {"k_shots": [0]}, [row])
    >>> doc["results"][0]["cer_mean"]
    0.5
    """
    os.makedirs(output_folder, exist_ok=True)
    document = {"protocol": protocol, "results": rows}
    with open(
        os.path.join(output_folder, RESULTS_JSON), "w", encoding="utf-8"
    ) as fout:
        json.dump(document, fout, indent=2)
    with open(
        os.path.join(output_folder, RESULTS_MD), "w", encoding="utf-8"
    ) as fout:
        fout.write(markdown_table(rows, title=title))
    plot_results(rows, os.path.join(output_folder, RESULTS_PNG), title=title)
    return document


def _fmt(mean, ci):
    if ci is None:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * ci:.1f}"


def markdown_table(rows, title=None):
    """CER (and WER) per method and k as a markdown table.

    Arguments
    ---------
    rows : list of dict
        Result rows.
    title : str, optional
        A heading line.

    Returns
    -------
    str

    Example
    -------
    >>> rows = [{"method": "maml", "k_shot": 5, "cer_mean": 0.2,
    ...          "cer_ci95": 0.02, "wer_mean": 0.5, "wer_ci95": 0.05,
    ...          "trainable_params": 10, "adapt_seconds_mean": 0.1}]
    >>> print(markdown_table(rows).splitlines()[2])
    | maml | 20.0 ± 2.0 | 10 | 0.10 |
    """
    methods = list(OrderedDict.fromkeys(r["method"] for r in rows))
    ks = sorted({r["k_shot"] for r in rows})
    by = {(r["method"], r["k_shot"]): r for r in rows}
    lines = []
    if title:
        lines += [f"### {title}", ""]
    header = ["method"] + [f"CER % k={k}" for k in ks]
    header += ["adapted params", "adapt s"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for m in methods:
        cells = [m]
        params, secs = 0, 0.0
        for k in ks:
            r = by.get((m, k))
            cells.append(
                "—" if r is None else _fmt(r["cer_mean"], r["cer_ci95"])
            )
            if r is not None and k > 0:
                params = r["trainable_params"]
                secs = r["adapt_seconds_mean"]
        cells += [f"{params:,}", f"{secs:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "WER % (digit error rate): "
        + "; ".join(
            m
            + " "
            + ", ".join(
                f"k={k}: {100 * by[(m, k)]['wer_mean']:.1f}"
                for k in ks
                if (m, k) in by
            )
            for m in methods
        )
    )
    return "\n".join(lines) + "\n"


def plot_results(rows, path, title=None):
    """Plots CER against k, one line per method, with 95% intervals.

    Arguments
    ---------
    rows : list of dict
        Result rows.
    path : str
        The PNG to write.
    title : str, optional
        The plot title.

    Returns
    -------
    str
        The path written.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"method": "maml", "k_shot": k, "cer_mean": 0.5 - 0.01 * k,
    ...          "cer_ci95": 0.05} for k in (0, 5, 10)]
    >>> path = plot_results(rows, os.path.join(tempfile.mkdtemp(), "p.png"))
    >>> os.path.getsize(path) > 1000
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(OrderedDict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    colors = plt.get_cmap("tab20").colors
    markers = "osD^vP*Xh<>p"
    for i, m in enumerate(methods):
        mine = sorted(
            (r for r in rows if r["method"] == m), key=lambda r: r["k_shot"]
        )
        ks = [r["k_shot"] for r in mine]
        cer = [100 * r["cer_mean"] for r in mine]
        err = [100 * (r["cer_ci95"] or 0.0) for r in mine]
        ax.errorbar(
            ks,
            cer,
            yerr=err,
            marker=markers[i % len(markers)],
            color=colors[i % len(colors)],
            linestyle="-" if i < len(colors) else "--",
            capsize=3,
            alpha=0.85,
            label=m,
        )
    ax.set_xticks(sorted({r["k_shot"] for r in rows}))
    ax.set_xlabel("support utterances k")
    ax.set_ylabel("CER % (query), mean and 95 % CI")
    ax.set_title(title or "Few-shot adaptation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_results(path):
    """Reads a ``few_shot_results.json``.

    Arguments
    ---------
    path : str
        The file, or the folder holding it.

    Returns
    -------
    dict

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, RESULTS_JSON), "w") as f:
    ...     json.dump({"protocol": {}, "results": []}, f)
    >>> load_results(folder)
    {'protocol': {}, 'results': []}
    """
    if os.path.isdir(path):
        path = os.path.join(path, RESULTS_JSON)
    with open(path, encoding="utf-8") as fin:
        return json.load(fin)


def merge_results(documents):
    """Merges the results of several methods run on the same episodes.

    Arguments
    ---------
    documents : list of dict
        ``few_shot_results.json`` documents.

    Returns
    -------
    dict
        One document with every method's rows.

    Example
    -------
    >>> a = {"protocol": {"episodes_digest": "x"}, "results": [{"method": "a"}]}
    >>> b = {"protocol": {"episodes_digest": "x"}, "results": [{"method": "b"}]}
    >>> [r["method"] for r in merge_results([a, b])["results"]]
    ['a', 'b']
    """
    if not documents:
        raise ValueError("merge_results: nothing to merge")
    digests = {d["protocol"].get("episodes_digest") for d in documents}
    if len(digests) != 1:
        raise ValueError(
            "merge_results: the methods were evaluated on different episodes "
            f"(digests {sorted(map(str, digests))}); rerun them with the same "
            "corpus, protocol and seed."
        )
    rows = [r for d in documents for r in d["results"]]
    return {"protocol": documents[0]["protocol"], "results": rows}


_ROW_TYPES = {
    "method": str,
    "k_shot": int,
    "adapt_steps": int,
    "cer_mean": float,
    "cer_ci95": (float, type(None)),
    "wer_mean": float,
    "wer_ci95": (float, type(None)),
    "n_tasks": int,
    "n_episodes": int,
    "trainable_params": int,
    "adapt_seconds_mean": float,
}
_PROTOCOL_TYPES = {
    "dataset": str,
    "tasks": list,
    "episodes_per_task": int,
    "k_shots": list,
    "query_utterances": int,
    "seed": int,
}


def validate_results(document):
    """Checks a ``few_shot_results.json`` document against the contract.

    The contract is the schema in ``DESIGN.md``: a ``protocol`` object and
    a list of ``results`` rows with the fields and types below; error
    rates are fractions in [0, inf) and every method has one row per k.

    Arguments
    ---------
    document : dict
        The parsed JSON.

    Returns
    -------
    list of str
        The methods found.

    Example
    -------
    >>> validate_results({"protocol": {}, "results": []})
    Traceback (most recent call last):
    ...
    ValueError: protocol: missing 'dataset'
    """
    if not isinstance(document, dict):
        raise ValueError("the document is not a JSON object")
    for key in ("protocol", "results"):
        if key not in document:
            raise ValueError(f"missing {key!r}")
    protocol = document["protocol"]
    for key, kind in _PROTOCOL_TYPES.items():
        if key not in protocol:
            raise ValueError(f"protocol: missing {key!r}")
        if not isinstance(protocol[key], kind):
            raise ValueError(f"protocol: {key!r} is not {kind.__name__}")
    if not isinstance(document["results"], list) or not document["results"]:
        raise ValueError("results: not a non-empty list")
    seen = {}
    for i, row in enumerate(document["results"]):
        for key, kind in _ROW_TYPES.items():
            if key not in row:
                raise ValueError(f"results[{i}]: missing {key!r}")
            value = row[key]
            if kind is float and isinstance(value, int):
                value = float(value)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ValueError(
                    f"results[{i}]: {key!r} has type {type(value)}"
                )
        for key in ("cer_mean", "wer_mean"):
            if not (row[key] >= 0 and math.isfinite(row[key])):
                raise ValueError(f"results[{i}]: {key} = {row[key]}")
        if row["k_shot"] not in protocol["k_shots"]:
            raise ValueError(
                f"results[{i}]: k_shot {row['k_shot']} not in protocol"
            )
        seen.setdefault(row["method"], []).append(row["k_shot"])
    for method, ks in seen.items():
        if sorted(ks) != sorted(protocol["k_shots"]):
            raise ValueError(
                f"{method}: rows for k={sorted(ks)}, protocol has "
                f"{protocol['k_shots']}"
            )
    return list(seen)
