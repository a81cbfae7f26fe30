"""Every report the package writes: markdown tables, PNG figures, JSON.

The generic writers (``markdown_table``, ``pyplot``, ``save_figure``,
``write_json``) and the few-shot ones built on them: the results table and
the plot of error rate (or a translation's BLEU) against k
(``results_table``, ``plot_results``) and the N-way K-shot accuracy table
(``way_shot_table``). What goes into ``few_shot_results.json`` is defined
in ``speechbrain_meta.evaluation.results``.

Authors
 * speechbrain-meta developers 2026
"""

import json
import os
from collections import OrderedDict

from speechbrain.utils.distributed import if_main_process


def markdown_table(header, rows):
    """A markdown table.

    Arguments
    ---------
    header : list of str
        Column titles.
    rows : list of list
        One list of cells per row (anything ``str`` can print).

    Returns
    -------
    str
        The table, one line per row, ending with a newline.

    Example
    -------
    >>> print(markdown_table(["method", "CER"], [["maml", "20.0"]]))
    | method | CER |
    |---|---|
    | maml | 20.0 |
    <BLANKLINE>
    """
    lines = [
        "| " + " | ".join(map(str, header)) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pyplot():
    """Matplotlib's pyplot on the file-only Agg backend (no display needed).

    Returns
    -------
    module

    Example
    -------
    >>> plt = pyplot()
    >>> plt.get_backend().lower()
    'agg'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=110):
    """Writes a figure as PNG and closes it.

    Arguments
    ---------
    fig : matplotlib.figure.Figure
        The figure.
    path : str
        The PNG file.
    dpi : int
        Resolution.

    Returns
    -------
    str
        The path.

    Example
    -------
    >>> import tempfile
    >>> fig, ax = pyplot().subplots()
    >>> _ = ax.plot([0, 1], [1, 0])
    >>> path = save_figure(fig, os.path.join(tempfile.mkdtemp(), "a.png"))
    >>> os.path.getsize(path) > 1000
    True
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return path


def write_json(path, document):
    """Writes a JSON document atomically (a temporary file, then a rename).

    Arguments
    ---------
    path : str
        The file.
    document : object
        Anything ``json`` can write.

    Returns
    -------
    str
        The path.

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = write_json(os.path.join(tempfile.mkdtemp(), "a.json"), [1])
    >>> Path(path).read_text().split()
    ['[', '1', ']']
    """
    if not if_main_process():  # under DDP one rank writes
        return path
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fout:
        json.dump(document, fout, indent=2)
    os.replace(tmp, path)
    return path


def _fmt(mean, ci):
    if ci is None:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * ci:.1f}"


def label(row):
    """A row's method, with its adaptation budget if it has one.

    Arguments
    ---------
    row : dict
        A result row.

    Returns
    -------
    str

    Example
    -------
    >>> label({"method": "maml", "budget": "quick"}), label({"method": "x"})
    ('maml (quick)', 'x')
    """
    budget = row.get("budget")
    return row["method"] if budget is None else f"{row['method']} ({budget})"


def describe_adaptation(settings):
    """An adaptation's settings in a few characters.

    Arguments
    ---------
    settings : dict
        ``Adaptation.describe()``.

    Returns
    -------
    str

    Example
    -------
    >>> describe_adaptation({"rule": "adam", "lr": 0.001, "steps": 20,
    ...                      "mode": "eval", "folds": 0})
    'adam 0.001 x20 eval'
    >>> describe_adaptation({"rule": "sgd", "lr": 0.1, "steps": 10,
    ...     "mode": "eval", "l2sp": 0.01, "max_update": 0.05, "folds": 5})
    'sgd 0.1 x<=10 eval l2sp(0.01) bound(0.05) cv(5, loss)'
    >>> describe_adaptation({"rule": "adam", "lr": 0.001, "steps": 3,
    ...     "mode": "eval", "adapt_params": ["*norm*"], "unsupervised": {
    ...     "objective": "entropy", "temperature": 2.5, "mcc": 0.7}})
    'adam 0.001 x3 eval entropy(T=2.5, mcc=0.7) on *norm*'
    """
    if not settings:
        return ""
    rule = settings["rule"]
    if settings.get("lr") is not None:
        rule += f" {settings['lr']:g}"
    bound = "<=" if settings.get("folds") else ""
    text = f"{rule} x{bound}{settings['steps']} {settings['mode']}"
    if settings.get("l2sp"):
        text += f" l2sp({settings['l2sp']:g})"
    if settings.get("kl"):
        text += f" kl({settings['kl']:g})"
    if settings.get("max_update") is not None:
        text += f" bound({settings['max_update']:g})"
    unsupervised = settings.get("unsupervised")
    if unsupervised:
        text += (
            f" {unsupervised['objective']}(T={unsupervised['temperature']:g}"
            f", mcc={unsupervised['mcc']:g})"
        )
    if settings.get("adapt_params"):
        text += " on " + ",".join(settings["adapt_params"])
    if settings.get("folds"):
        default = "objective" if unsupervised else "loss"
        criterion = settings.get("criterion", default)
        text += f" cv({settings['folds']}, {criterion})"
    return text


def results_table(rows, title=None):
    """CER (and WER) per method and k as markdown, one table per budget;
    BLEU (then WER and CER) for a translation's rows.

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
    >>> print(results_table(rows).splitlines()[2])
    | maml | 20.0 ± 2.0 |  | 10 | 0.10 |
    """
    budgets = list(OrderedDict.fromkeys(r.get("budget") for r in rows))
    lines = [f"### {title}", ""] if title else []
    for budget in budgets:
        mine = [r for r in rows if r.get("budget") == budget]
        if budget is not None:
            lines += [f"#### {budget} adaptation", ""]
        lines.append(_table(mine))
    return "\n".join(lines) + "\n"


def is_translation(rows):
    """Whether the rows score a translation (every row has a BLEU).

    Arguments
    ---------
    rows : list of dict
        Result rows.

    Returns
    -------
    bool

    Example
    -------
    >>> is_translation([{"bleu_mean": 0.3}]), is_translation([{}])
    (True, False)
    """
    return bool(rows) and all("bleu_mean" in r for r in rows)


def _table(rows):
    methods = list(OrderedDict.fromkeys(r["method"] for r in rows))
    ks = sorted({r["k_shot"] for r in rows})
    by = {(r["method"], r["k_shot"]): r for r in rows}
    # A translation is reported by its BLEU (higher is better), then its
    # WER and CER; a transcription by its CER, then its WER.
    metric = "bleu" if is_translation(rows) else "cer"
    header = ["method"] + [f"{metric.upper()} % k={k}" for k in ks]
    header += ["adaptation", "adapted params", "adapt s"]
    table = []
    for m in methods:
        cells = [m]
        params, secs, settings = 0, 0.0, ""
        for k in ks:
            r = by.get((m, k))
            cells.append(
                "—"
                if r is None
                else _fmt(r[f"{metric}_mean"], r[f"{metric}_ci95"])
            )
            if r is not None and k > 0:
                params = r["trainable_params"]
                secs = r["adapt_seconds_mean"]
                settings = describe_adaptation(r.get("adaptation"))
        cells += [settings, f"{params:,}", f"{secs:.2f}"]
        table.append(cells)
    lines = [markdown_table(header, table)]
    for other in ("wer", "cer") if metric == "bleu" else ("wer",):
        lines.append(
            f"{other.upper()} %: "
            + "; ".join(
                m
                + " "
                + ", ".join(
                    f"k={k}: {100 * by[(m, k)][f'{other}_mean']:.1f}"
                    for k in ks
                    if (m, k) in by
                )
                for m in methods
            )
        )
    return "\n".join(lines) + "\n"


def plot_results(rows, path, title=None, metric="cer"):
    """Plots CER (or BLEU) against k, one line per method, with 95%
    intervals.

    Arguments
    ---------
    rows : list of dict
        Result rows.
    path : str
        The PNG to write.
    title : str, optional
        The plot title.
    metric : str
        ``cer``, or ``bleu`` for a translation's rows.

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
    plt = pyplot()
    methods = list(OrderedDict.fromkeys(label(r) for r in rows))
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    colors = plt.get_cmap("tab20").colors
    markers = "osD^vP*Xh<>p"
    for i, m in enumerate(methods):
        mine = sorted(
            (r for r in rows if label(r) == m), key=lambda r: r["k_shot"]
        )
        ks = [r["k_shot"] for r in mine]
        cer = [100 * r[f"{metric}_mean"] for r in mine]
        err = [100 * (r[f"{metric}_ci95"] or 0.0) for r in mine]
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
    ax.set_ylabel(f"{metric.upper()} % (query), mean and 95 % CI")
    ax.set_title(title or "Few-shot adaptation")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, path)


def way_shot_table(rows):
    """The markdown table of N-way K-shot results.

    Arguments
    ---------
    rows : list of dict
        Rows of ``WayShotProtocol.evaluate``.

    Returns
    -------
    str

    Example
    -------
    >>> row = {"method": "protonet", "n_way": 5, "k_shot": 1,
    ...        "accuracy_mean": 61.25, "accuracy_ci95": 2.5,
    ...        "n_episodes": 100, "diverged_episodes": 0}
    >>> print(way_shot_table([row]).splitlines()[2])
    | protonet | 5 | 1 | 61.2 ± 2.5 | 100 | 0 |
    """
    header = ["method", "ways", "shots", "accuracy %", "episodes", "diverged"]
    body = []
    for r in rows:
        half = r["accuracy_ci95"]
        ci = "" if half is None else f" ± {half:.1f}"
        body.append(
            [
                r["method"],
                r["n_way"],
                r["k_shot"],
                f"{r['accuracy_mean']:.1f}{ci}",
                r["n_episodes"],
                r["diverged_episodes"],
            ]
        )
    return markdown_table(header, body)
