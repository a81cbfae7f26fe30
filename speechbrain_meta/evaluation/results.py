"""Few-shot results: the JSON contract, writing, reading, merging, checking.

``few_shot_results.json`` holds a ``protocol`` object (the dataset, tasks,
episodes, k values, query size, seed and a digest of every episode) and a
list of ``results`` rows, one per method, k and adaptation budget::

    {"protocol": {"dataset": "...", "tasks": ["..."], "episodes_per_task": 5,
                  "k_shots": [0, 1, 5, 10], "query_utterances": 20,
                  "seed": 1234, ...},
     "results": [{"method": "maml", "k_shot": 5, "adapt_steps": 10,
                  "cer_mean": 0.213, "cer_ci95": 0.021, "wer_mean": 0.41,
                  "wer_ci95": 0.03, "n_tasks": 4, "n_episodes": 20,
                  "trainable_params": 1234567, "adapt_seconds_mean": 0.8}]}

Error rates are fractions. A translation's rows also have ``bleu_mean``,
``bleu_ci95`` and ``episode_bleus`` (BLEU / 100). A row also carries the
adaptation's settings (``adaptation``: rule, rate, steps, normalisation
mode), its ``budget`` (``tuned``: the settings best for the method on
meta-dev; ``quick``: a fixed small budget), the training ``seeds`` it
pools and every scored episode (``episode_cers``, ``episode_wers``), so
that runs pool exactly (``pool_seeds``). Every (method, budget) has a row
for each k of the protocol, except episodic adaptation (the adaptation's
``per_utterance`` is true: each query utterance adapted to alone, no
support), which has one row, at k = 0. It is written beside a markdown
table and a PNG plot (``speechbrain_meta.reports``).

Authors
 * speechbrain-meta developers 2026
"""

import json
import math
import os

from speechbrain.utils.distributed import if_main_process

from speechbrain_meta.evaluation.stats import summary_row
from speechbrain_meta.reports import (
    is_translation,
    plot_results,
    results_table,
    way_shot_table,
    write_json,
)

RESULTS_JSON = "few_shot_results.json"
RESULTS_MD = "few_shot_results.md"
RESULTS_PNG = "few_shot_cer.png"


def write_results(output_folder, protocol, rows, title=None, **fields):
    """Writes the JSON, the markdown table and the PNG plot.

    Arguments
    ---------
    output_folder : str
        Where to write ``few_shot_results.{json,md}`` and ``few_shot_cer.png``
        (and ``few_shot_bleu.png`` for a translation).
    protocol : dict
        ``FewShotProtocol.description()``.
    rows : list of dict
        Result rows of one or more methods.
    title : str, optional
        Heading of the table and plot.
    **fields : dict
        More entries of the JSON document (e.g. the adaptations used).

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
    document = {"protocol": protocol, "results": rows, **fields}
    if not if_main_process():  # under DDP every rank scores, one writes
        return document
    write_json(os.path.join(output_folder, RESULTS_JSON), document)
    with open(
        os.path.join(output_folder, RESULTS_MD), "w", encoding="utf-8"
    ) as fout:
        fout.write(results_table(rows, title=title))
    plot_results(rows, os.path.join(output_folder, RESULTS_PNG), title=title)
    if is_translation(rows):
        plot_results(
            rows,
            os.path.join(output_folder, "few_shot_bleu.png"),
            title=title,
            metric="bleu",
        )
    return document


def write_way_shot_results(output_folder, protocol, rows, **fields):
    """Writes ``few_shot_results.json`` and ``few_shot_results.md``.

    Arguments
    ---------
    output_folder : str
        Where to write.
    protocol : WayShotProtocol
        The protocol (its description goes into the JSON).
    rows : list of dict
        The result rows.
    **fields : dict
        More top-level entries of the JSON (e.g. ``skipped``).

    Returns
    -------
    str
        The JSON file's path.
    """
    document = {"protocol": protocol.description(), "results": rows}
    document.update(fields)
    path = write_json(
        os.path.join(output_folder, "few_shot_results.json"), document
    )
    if if_main_process():
        with open(os.path.join(output_folder, "few_shot_results.md"), "w") as f:
            f.write(way_shot_table(rows) + "\n\n" + protocol.protocol_note())
            f.write("\n")
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


def cached_results(output_folder, protocol):
    """The results already written for this exact protocol, if any.

    Arguments
    ---------
    output_folder : str
        Where ``write_results`` writes.
    protocol : dict
        ``FewShotProtocol.description()`` of the run about to start.

    Returns
    -------
    dict or None
        The document, if the folder holds one with the same protocol (the
        same episodes, k values, steps and seed), else None.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> cached_results(folder, {"seed": 1}) is None
    True
    >>> _ = write_json(os.path.join(folder, RESULTS_JSON),
    ...                {"protocol": {"seed": 1}, "results": []})
    >>> cached_results(folder, {"seed": 1})["results"]
    []
    >>> cached_results(folder, {"seed": 2}) is None
    True
    """
    path = os.path.join(output_folder, RESULTS_JSON)
    if not os.path.exists(path):
        return None
    document = load_results(path)
    if document.get("protocol") != json.loads(json.dumps(protocol)):
        return None
    return document


ROW_TYPES = {
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
PROTOCOL_TYPES = {
    "dataset": str,
    "tasks": list,
    "episodes_per_task": int,
    "k_shots": list,
    "query_utterances": int,
    "seed": int,
}


def validate_results(document):
    """Checks a ``few_shot_results.json`` document against the contract.

    The contract (module docstring): a ``protocol`` object and a list of
    ``results`` rows with the fields and types of ``ROW_TYPES`` and
    ``PROTOCOL_TYPES``; error rates are fractions in [0, inf) and every
    method has one row per k.

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
    for key, kind in PROTOCOL_TYPES.items():
        if key not in protocol:
            raise ValueError(f"protocol: missing {key!r}")
        if not isinstance(protocol[key], kind):
            raise ValueError(f"protocol: {key!r} is not {kind.__name__}")
    if not isinstance(document["results"], list) or not document["results"]:
        raise ValueError("results: not a non-empty list")
    seen, expected = {}, {}
    for i, row in enumerate(document["results"]):
        for key, kind in ROW_TYPES.items():
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
        if "bleu_mean" in row and not 0 <= row["bleu_mean"] <= 1:
            raise ValueError(f"results[{i}]: bleu_mean = {row['bleu_mean']}")
        if row["k_shot"] not in protocol["k_shots"]:
            raise ValueError(
                f"results[{i}]: k_shot {row['k_shot']} not in protocol"
            )
        method = row["method"]
        if row.get("budget") is not None:
            method = f"{method} ({row['budget']})"
        seen.setdefault(method, []).append(row["k_shot"])
        if (row.get("adaptation") or {}).get("per_utterance"):
            expected[method] = [0]  # episodic: one row, no support
    for method, ks in seen.items():
        wanted = expected.get(method, protocol["k_shots"])
        if sorted(ks) != sorted(wanted):
            raise ValueError(
                f"{method}: rows for k={sorted(ks)}, expected {wanted}"
            )
    return list(dict.fromkeys(r["method"] for r in document["results"]))


def pool_seeds(documents):
    """Pools the results of the same methods trained with several seeds.

    Rows with the same method, budget and k are pooled: their episode
    scores are concatenated, the mean and interval recomputed over seeds x
    tasks x episodes, per-task means averaged.

    Arguments
    ---------
    documents : list of dict
        ``few_shot_results.json`` documents of one protocol (same
        episodes), one per training seed, each row with its ``seeds``.

    Returns
    -------
    dict
        One document; each row lists the ``seeds`` it pools and, when the
        seeds chose different settings, ``adaptation_per_seed``.

    Example
    -------
    >>> docs = [{"protocol": {"episodes_digest": "x"}, "results": [
    ...     dict(summary_row("m", 5, [c], [c]), seeds=[s])]}
    ...     for s, c in ((1, 0.2), (2, 0.4))]
    >>> row = pool_seeds(docs)["results"][0]
    >>> row["seeds"], row["n_episodes"], round(row["cer_mean"], 3)
    ([1, 2], 2, 0.3)
    """
    merged = merge_results(documents)
    groups = {}
    for row in merged["results"]:
        key = (row["method"], row.get("budget"), row["k_shot"])
        groups.setdefault(key, []).append(row)
    rows = []
    for (method, budget, k), parts in groups.items():
        adaptations = [p.get("adaptation") for p in parts]
        tasks = parts[0].get("cer_per_task", {})
        row = summary_row(
            method,
            k,
            [c for p in parts for c in p["episode_cers"]],
            [w for p in parts for w in p["episode_wers"]],
            adaptation=adaptations[0],
            n_tasks=parts[0]["n_tasks"],
            trainable_params=parts[0]["trainable_params"],
            adapt_seconds=[p["adapt_seconds_mean"] for p in parts if k],
            cer_per_task={
                t: sum(p["cer_per_task"][t] for p in parts) / len(parts)
                for t in tasks
            },
            diverged_episodes=sum(p.get("diverged_episodes", 0) for p in parts),
            seeds=[s for p in parts for s in p.get("seeds", [])],
            bleus=(
                [b for p in parts for b in p["episode_bleus"]]
                if all("episode_bleus" in p for p in parts)
                else None
            ),
        )
        if any("abstained_episodes" in p for p in parts):
            row["abstained_episodes"] = sum(
                p.get("abstained_episodes", 0) for p in parts
            )
        if all("unadapted_cer_per_task" in p for p in parts):
            # an episodic row's own baseline, pooled as its CER is
            row["unadapted_cer_per_task"] = {
                t: sum(p["unadapted_cer_per_task"][t] for p in parts)
                / len(parts)
                for t in tasks
            }
            row["unadapted_cer_mean"] = sum(
                p["unadapted_cer_mean"] for p in parts
            ) / len(parts)
        if budget is not None:
            row["budget"] = budget
        if any(a != adaptations[0] for a in adaptations):
            row["adaptation_per_seed"] = adaptations
        rows.append(row)
    return {"protocol": merged["protocol"], "results": rows}
