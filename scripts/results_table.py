#!/usr/bin/env python3
"""Prints the markdown table of a few_shot_results.json, or writes the main
job's report into a README.

    python scripts/results_table.py results/SynthDigits/benchmark [--title T]
    python scripts/results_table.py DIR --readme README.md

With ``--readme``, the text between the README's ``<!-- results:begin -->``
and ``<!-- results:end -->`` lines is replaced by the folder's
``benchmark.md`` (written by the main job from its results JSON), so the
README's tables are always the ones a run wrote.

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import os

from speechbrain_meta.evaluation import load_results, results_table

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"


def insert_report(readme, report):
    """The README text with the report between its markers.

    Arguments
    ---------
    readme : str
        The README's text, with both markers.
    report : str
        What goes between them.

    Returns
    -------
    str

    Example
    -------
    >>> text = chr(10).join(["a", BEGIN, "old", END, "b"])
    >>> insert_report(text, "new").splitlines()
    ['a', '<!-- results:begin -->', 'new', '<!-- results:end -->', 'b']
    """
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"the README has no {BEGIN} ... {END} section")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{report.strip()}\n{END}{tail}"


def main(argv=None):
    """Prints a results table, or writes the report into a README."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="few_shot_results.json or its folder")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--readme", default=None, help="write benchmark.md into this README"
    )
    args = parser.parse_args(argv)
    if args.readme:
        with open(
            os.path.join(args.results, "benchmark.md"), encoding="utf-8"
        ) as fin:
            report = fin.read()
        with open(args.readme, encoding="utf-8") as fin:
            text = insert_report(fin.read(), report)
        with open(args.readme, "w", encoding="utf-8") as fout:
            fout.write(text)
        return text
    table = results_table(load_results(args.results)["results"], args.title)
    print(table)
    return table


if __name__ == "__main__":
    main()
