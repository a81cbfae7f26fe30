#!/usr/bin/env python3
"""Prints the markdown table of a few_shot_results.json (the README tables).

    python scripts/results_table.py results/SynthDigits/benchmark [--title T]

Authors
 * speechbrain-meta developers 2026
"""

import argparse

from speechbrain_meta.evaluation import load_results, results_table


def main(argv=None):
    """Reads the results and prints their table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="few_shot_results.json or its folder")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    table = results_table(load_results(args.results)["results"], args.title)
    print(table)
    return table


if __name__ == "__main__":
    main()
