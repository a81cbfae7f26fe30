"""Markdown tables and PNG figures, for every report the package writes.

Authors
 * speechbrain-meta developers 2026
"""

import json
import os

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
