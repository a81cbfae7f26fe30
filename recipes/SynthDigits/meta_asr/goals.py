"""The main job's goals, checked from its results, and its report.

Read from the few-shot results the main job wrote (per seed and pooled):

* **never worse**: for every method and evaluation set, the mean CER of
  the ``default`` adaptation (what the exported model does, measured
  through ``AdaptiveASR``) against the unadapted model at each k, and the
  share of (seed, task) pairs that it made worse by more than
  ``WORSE_BY`` (CER, absolute);
* **the method claim**: the best meta-learner's ``default`` CER against
  the ``tuned`` CER of ``joint`` (fine-tuning with the settings best for
  it on meta-dev) at k = 5 and 10, relative;
* **per seed**: unadapted and default-adapted CER of every method.

``write_report`` puts them with the pooled tables in ``benchmark.md``
(the tables of the recipe's README are that file, inserted by
``scripts/results_table.py --readme``).

Authors
 * speechbrain-meta developers 2026
"""

import os
import platform

from speechbrain_meta.evaluation import (
    is_translation,
    load_results,
    results_table,
)
from speechbrain_meta.reports import markdown_table

WORSE_BY = 0.02
CLAIM = -0.20  # the best meta-learner at least 20 % below tuned joint
UNSUPERVISED_KS = (1, 5, 10, "each")  # "each": every query utterance alone
BASELINES = ("joint", "scratch", "lora", "adapter")


def per_seed_rows(folder, seeds, methods, split):
    """The per-seed result rows of one evaluation set.

    Arguments
    ---------
    folder : str
        The main job's output folder.
    seeds : list of int
        Training seeds.
    methods : list of str
        Methods.
    split : str
        ``test``, ``test_voices`` or ``real``.

    Returns
    -------
    dict
        ``(method, seed)`` to that run's rows.
    """
    out = {}
    for seed in seeds:
        for method in methods:
            path = os.path.join(
                folder, f"seed{seed}", method, "few_shot", split
            )
            if os.path.isdir(path):
                out[(method, seed)] = load_results(path)["results"]
    return out


def never_worse(runs, ks=(1, 5, 10), budget="default"):
    """How often an adaptation made a task worse than no adaptation.

    Arguments
    ---------
    runs : dict
        ``(method, seed)`` to result rows (``per_seed_rows``).
    ks : tuple of int
        Support sizes checked.
    budget : str
        The adaptation checked.

    Returns
    -------
    dict
        Method to k to ``unadapted``, ``adapted`` (mean CER over seeds and
        tasks), ``worse`` and ``pairs`` ((seed, task) pairs worse by more
        than ``WORSE_BY``, and all of them), ``abstained`` episodes.

    Example
    -------
    >>> rows = [
    ...     {"budget": "default", "k_shot": 0, "cer_per_task": {"a": 0.5,
    ...      "b": 0.5}},
    ...     {"budget": "default", "k_shot": 5, "cer_per_task": {"a": 0.4,
    ...      "b": 0.6}, "abstained_episodes": 1}]
    >>> out = never_worse({("m", 1): rows}, ks=(5,))["m"][5]
    >>> out["worse"], out["pairs"], out["abstained"]
    (1, 2, 1)
    """
    out = {}
    for (method, _), rows in runs.items():
        mine = [r for r in rows if r.get("budget") == budget]
        zero = next((r for r in mine if r["k_shot"] == 0), None)
        if zero is None:
            continue
        for row in mine:
            k = row["k_shot"]
            if k not in ks:
                continue
            entry = out.setdefault(method, {}).setdefault(
                k,
                {"unadapted": [], "adapted": [], "worse": 0, "pairs": 0,
                 "abstained": 0},
            )  # fmt: skip
            # (an episodic row carries its own baseline: each utterance
            # transcribed alone, unadapted)
            bases = row.get("unadapted_cer_per_task") or zero["cer_per_task"]
            for task, cer in row["cer_per_task"].items():
                base = bases[task]
                entry["unadapted"].append(base)
                entry["adapted"].append(cer)
                entry["pairs"] += 1
                entry["worse"] += cer > base + WORSE_BY
            entry["abstained"] += row.get("abstained_episodes", 0)
    for method in out.values():
        for entry in method.values():
            for key in ("unadapted", "adapted"):
                entry[key] = sum(entry[key]) / len(entry[key])
    return out


def with_each_utterance(runs):
    """The rows with each ``unsupervised_each`` row (every query utterance
    adapted to alone) as the ``unsupervised`` budget's row of k ``each``,
    so that ``never_worse`` compares it with the same unadapted model.

    Arguments
    ---------
    runs : dict
        ``(method, seed)`` to result rows.

    Returns
    -------
    dict

    Example
    -------
    >>> runs = {("m", 1): [{"budget": "unsupervised_each", "k_shot": 0}]}
    >>> with_each_utterance(runs)[("m", 1)][0]["k_shot"]
    'each'
    """
    return {
        key: [
            dict(r, budget="unsupervised", k_shot="each")
            if r.get("budget") == "unsupervised_each"
            else r
            for r in rows
        ]
        for key, rows in runs.items()
    }


def never_worse_table(worse, methods, title, budget):
    """``never_worse``'s figures as markdown lines (a title, a table).

    Arguments
    ---------
    worse : dict
        From ``never_worse``.
    methods : list of str
        Their order.
    title : str
        What is compared.
    budget : str
        The adapted column's name.

    Returns
    -------
    list of str

    Example
    -------
    >>> worse = {"m": {5: {"unadapted": 0.5, "adapted": 0.4, "worse": 0,
    ...                    "pairs": 2, "abstained": 0}}}
    >>> never_worse_table(worse, ["m"], "T", "default")[-2].splitlines()[-1]
    '| m | 5 | 50.0 | 40.0 | yes | 0/2 (0 %) | 0 |'
    """
    table = []
    for method in methods:
        entries = worse.get(method, {}).items()
        for k, e in sorted(entries, key=lambda i: (isinstance(i[0], str), i)):
            share = e["worse"] / e["pairs"] if e["pairs"] else 0.0
            table.append(
                [
                    method,
                    k,
                    f"{100 * e['unadapted']:.1f}",
                    f"{100 * e['adapted']:.1f}",
                    "yes" if e["adapted"] <= e["unadapted"] else "**no**",
                    f"{e['worse']}/{e['pairs']} ({100 * share:.0f} %)",
                    e["abstained"],
                ]
            )
    header = ["method", "k", "unadapted CER %", f"{budget} CER %"]
    header += ["mean not worse", "pairs worse", "abstained episodes"]
    return [
        f"{title}, per (seed, task); worse = more than "
        f"{100 * WORSE_BY:.0f} CER points worse:",
        "",
        markdown_table(header, table),
        "",
    ]


def method_claim(pooled_rows, ks=(5, 10)):
    """The best meta-learner's default CER against tuned joint's.

    Arguments
    ---------
    pooled_rows : list of dict
        The pooled result rows of one set.
    ks : tuple of int
        Support sizes.

    Returns
    -------
    dict
        k to ``best_meta``, its ``cer``, ``joint_cer`` and ``relative``.

    Example
    -------
    >>> rows = [
    ...     {"method": "joint", "budget": "tuned", "k_shot": 5,
    ...      "cer_mean": 0.5},
    ...     {"method": "fomaml", "budget": "default", "k_shot": 5,
    ...      "cer_mean": 0.35}]
    >>> round(method_claim(rows, ks=(5,))[5]["relative"], 2)
    -0.3
    """
    out = {}
    for k in ks:
        joint = [
            r["cer_mean"]
            for r in pooled_rows
            if r["method"] == "joint"
            and r.get("budget") == "tuned"
            and r["k_shot"] == k
        ]
        meta = {
            r["method"]: r["cer_mean"]
            for r in pooled_rows
            if r["method"] not in BASELINES
            and r.get("budget") == "default"
            and r["k_shot"] == k
        }
        if not joint or not meta:
            continue
        best = min(meta, key=meta.get)
        out[k] = {
            "best_meta": best,
            "cer": meta[best],
            "joint_cer": joint[0],
            "relative": meta[best] / joint[0] - 1,
        }
    return out


def _ci(half_width):
    return "n/a" if half_width is None else f"± {100 * half_width:.1f}"


def bleu_claim(pooled_rows, ks=(5, 10)):
    """A translation's best meta-learner against the best tuned baseline,
    by BLEU (higher is better), in BLEU points.

    Arguments
    ---------
    pooled_rows : list of dict
        The pooled result rows of one set (with ``bleu_mean``).
    ks : tuple of int
        Support sizes.

    Returns
    -------
    dict
        k to ``best_meta`` and its ``bleu`` (``bleu_ci95``),
        ``best_baseline`` and its ``baseline_bleu`` (``baseline_ci95``),
        and ``difference`` (points).

    Example
    -------
    >>> rows = [
    ...     {"method": "joint", "budget": "tuned", "k_shot": 5,
    ...      "bleu_mean": 0.20},
    ...     {"method": "lora", "budget": "tuned", "k_shot": 5,
    ...      "bleu_mean": 0.25},
    ...     {"method": "fomaml", "budget": "default", "k_shot": 5,
    ...      "bleu_mean": 0.22}]
    >>> claim = bleu_claim(rows, ks=(5,))[5]
    >>> claim["best_baseline"], round(claim["difference"], 1)
    ('lora', -3.0)
    """
    out = {}
    for k in ks:
        base = {
            r["method"]: r
            for r in pooled_rows
            if r["method"] in BASELINES
            and r.get("budget") == "tuned"
            and r["k_shot"] == k
        }
        meta = {
            r["method"]: r
            for r in pooled_rows
            if r["method"] not in BASELINES
            and r.get("budget") == "default"
            and r["k_shot"] == k
        }
        if not base or not meta:
            continue
        best = max(meta, key=lambda m: meta[m]["bleu_mean"])
        baseline = max(base, key=lambda m: base[m]["bleu_mean"])
        out[k] = {
            "best_meta": best,
            "bleu": meta[best]["bleu_mean"],
            "bleu_ci95": meta[best].get("bleu_ci95"),
            "best_baseline": baseline,
            "baseline_bleu": base[baseline]["bleu_mean"],
            "baseline_ci95": base[baseline].get("bleu_ci95"),
            "difference": 100
            * (meta[best]["bleu_mean"] - base[baseline]["bleu_mean"]),
        }
    return out


def write_report(folder, seeds, methods, pooled, names, command, minutes):
    """Writes ``benchmark.md``: the tables and the goals, from the results.

    Arguments
    ---------
    folder : str
        The main job's output folder.
    seeds : list of int
        Training seeds.
    methods : list of str
        Methods run.
    pooled : dict
        Set to its pooled results document.
    names : dict
        Set to its name in words.
    command : str
        The command that made the results.
    minutes : float or None
        Its wall time (None: the report of runs made before).

    Returns
    -------
    dict
        The checks, per set (``never_worse``, ``claim``).
    """
    when = (
        "pooled from the runs in the folder"
        if minutes is None
        else f"{minutes:.1f} min wall time for this invocation (runs done "
        "before in the folder are reused, not counted)"
    )
    lines = [
        f"Command: `{command}`; seeds {', '.join(map(str, seeds))}; {when} "
        f"on {os.cpu_count()} CPU cores ({platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}); "
        "written by `recipes/SynthDigits/meta_asr/goals.py` from the "
        "results JSON.",
        "",
    ]
    checks = {}
    for split, document in pooled.items():
        rows = document["results"]
        lines += [f"### {names[split]}", ""]
        lines += [results_table(rows), ""]
        runs = per_seed_rows(folder, seeds, methods, split)
        worse = never_worse(runs)
        claim = method_claim(rows)
        checks[split] = {"never_worse": worse, "claim": claim}
        if is_translation(rows):
            checks[split]["bleu_claim"] = bleu_claim(rows)
        lines += never_worse_table(
            worse,
            methods,
            "Default adaptation (what the exported model does) against no "
            "adaptation",
            "default",
        )
        unsupervised = never_worse(
            with_each_utterance(runs), UNSUPERVISED_KS, "unsupervised"
        )
        if unsupervised:
            checks[split]["never_worse_unsupervised"] = unsupervised
            lines += never_worse_table(
                unsupervised,
                methods,
                "Adaptation without transcripts (the exported model's, "
                "chosen on meta-dev; k untranscribed support utterances, "
                "or `each`: every query utterance adapted to alone) against "
                "no adaptation",
                "unsupervised",
            )
        if claim:
            cells = [
                f"k = {k}: {c['best_meta']} {100 * c['cer']:.1f} vs joint "
                f"(tuned) {100 * c['joint_cer']:.1f}: "
                f"**{100 * c['relative']:+.0f} %**"
                + ("" if c["relative"] <= CLAIM else " (goal -20 % missed)")
                for k, c in sorted(claim.items())
            ]
            lines += [
                "Best meta-learner (default adaptation) against tuned "
                "joint: " + "; ".join(cells) + ".",
                "",
            ]
        if checks[split].get("bleu_claim"):
            cells = [
                f"k = {k}: {c['best_meta']} {100 * c['bleu']:.1f} "
                f"({_ci(c['bleu_ci95'])}) vs {c['best_baseline']} (tuned) "
                f"{100 * c['baseline_bleu']:.1f} "
                f"({_ci(c['baseline_ci95'])}): "
                f"**{c['difference']:+.1f} BLEU**"
                for k, c in sorted(checks[split]["bleu_claim"].items())
            ]
            lines += [
                "Translation: best meta-learner (default adaptation) "
                "against the best tuned baseline, BLEU (95 % intervals "
                "over seeds x tasks x episodes; overlapping intervals are "
                "no evidence either way): " + "; ".join(cells) + ".",
                "",
            ]
        seed_rows = []
        for (method, seed), mine in sorted(runs.items()):
            cer = {(r.get("budget"), r["k_shot"]): r["cer_mean"] for r in mine}
            seed_rows.append(
                [method, seed]
                + [
                    ""
                    if ("default", k) not in cer
                    else f"{100 * cer[('default', k)]:.1f}"
                    for k in (0, 1, 5, 10)
                ]
            )
        lines += [
            "Per seed, default adaptation (k = 0: unadapted), CER %:",
            "",
            markdown_table(
                ["method", "seed", "k=0", "k=1", "k=5", "k=10"], seed_rows
            ),
            "",
        ]
    with open(
        os.path.join(folder, "benchmark.md"), "w", encoding="utf-8"
    ) as fout:
        fout.write("\n".join(lines))
    return checks
