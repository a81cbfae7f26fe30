#!/usr/bin/env python3
"""The main job: few-shot adaptation to unseen languages and voices.

Generates the SynthDigits corpus and the real-speech set, trains the joint
model, meta-trains the meta-learners from it, for each training seed, and
runs the few-shot protocol for every method on the same episodes: each
method adapts with the settings chosen for it on meta-dev (``tuned``) and
with the same made conservative and validated (``default``: what its
exported model does, measured through ``AdaptiveASR``). Progress goes to
the terminal. The seeds are pooled (means and 95 % intervals over seeds x
tasks x episodes); then it prints the tables and writes

* ``DIR/few_shot_results.{json,md}``, ``DIR/few_shot_cer.png``: unseen
  languages; the same under ``DIR/test_voices/`` (unseen voices of the
  training languages) and ``DIR/real/`` (real recorded voices);
* ``DIR/benchmark.md``: the tables and the goals (``goals.py``: default
  adaptation never worse than none, the method claim, per-seed figures);
* ``DIR/benchmark.json``: settings, wall time per seed and method, the
  goals' figures.

Each method and seed is ``train.py hparams/<method>.yaml --seed=S`` run
in-process; its model and results live in ``DIR/seed<S>/<method>/``, and a
rerun skips what is done (SpeechBrain checkpoints, cached results).

Usage::

    python run_benchmark.py [--output_folder DIR] [--methods all|maml,joint]
                            [--seeds 1,2,3] [--quick] [--device cpu]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time

import yaml

from speechbrain_meta.evaluation import (
    load_results,
    merge_results,
    pool_seeds,
    results_table,
    validate_results,
    write_results,
)
from speechbrain_meta.layered_yaml import layer_keys, load_layered_hparams
from speechbrain_meta.recipe import load_script
from speechbrain_meta.reports import write_json

HERE = os.path.dirname(os.path.abspath(__file__))
COMMON = os.path.join(HERE, "hparams", "models", "common.yaml")
# The SynthDigits recipes the job runs (--recipe): the CTC model (this
# folder), the attention models (joint CTC/attention: ../meta_seq2seq with
# an attentional RNN decoder, ../meta_transformer with a Conformer) and
# speech translation into English (../meta_st), on the same speech,
# budget and protocol.
RECIPES = {
    "meta_asr": HERE,
    "meta_seq2seq": os.path.join(os.path.dirname(HERE), "meta_seq2seq"),
    "meta_transformer": os.path.join(os.path.dirname(HERE), "meta_transformer"),
    "meta_st": os.path.join(os.path.dirname(HERE), "meta_st"),
}
# What each recipe's tables are titled with.
MODELS = {
    "meta_asr": "",
    "meta_seq2seq": " (attention model)",
    "meta_transformer": " (Conformer model)",
    "meta_st": "-ST (speech translation into English)",
}
_LOADED = {}


def _load_recipe(recipe="meta_asr"):
    """Loads a recipe's train.py (once), under a name no other recipe's
    train.py shadows.
    """
    if recipe not in _LOADED:
        _LOADED[recipe] = load_script(
            os.path.join(RECIPES[recipe], "train.py"),
            f"synthdigits_{recipe}_train",
        )
    return _LOADED[recipe]


def recipe_methods(recipe, methods):
    """The methods of a list that the recipe has an hparams file for."""
    folder = os.path.join(RECIPES[recipe], "hparams")
    return [m for m in methods if os.path.isfile(f"{folder}/{m}.yaml")]


def method_file(args, method):
    """The method's hparams file in the run's recipe."""
    return os.path.join(RECIPES[args.recipe], "hparams", f"{method}.yaml")


# Baselines first: the meta-learners and the adapter baselines start from
# the joint model.
BASELINES = ["joint", "scratch", "lora", "adapter"]
METHODS = BASELINES + [
    "maml",
    "fomaml",
    "reptile",
    "anil",
    "metasgd",
    "layer_step_lr",
    "learned_update",
    "scale_shift",
    "lhuc",
    "meta_lora",
    "meta_adapter",
    "unsupervised_maml",
]
# The default full run: the baselines users would pick, one method of
# each family (meta-initialisation first and second order aside, a learned
# optimiser, meta-transfer) and MAML for adaptation without transcripts;
# ``--methods all`` runs all 16.
MAIN = [
    "joint",
    "lora",
    "fomaml",
    "reptile",
    "metasgd",
    "lhuc",
    "unsupervised_maml",
]
SEEDS = [1234, 1235, 1236]
SETS = {
    "test": "unseen languages",
    "test_voices": "unseen voices of the training languages",
    "real": "real recorded voices",
}

# The CI-sized run: the same pipeline on a small corpus and budget.
QUICK = {
    "corpus": {
        "speakers_per_language": 2,
        "utts_per_speaker": 16,
        "heldout_utts_per_speaker": 24,
    },
    "real_speech": {"utts_per_speaker": 16},
    # 320 joint updates: enough to leave CTC's blank phase (the joint
    # model's meta-dev CER falls from 92 % at 12 updates to ~60-70 %),
    # then one epoch of meta-training from epoch 39.
    "joint_epochs": 40,
    "warm_start_epoch": 39,
    "episodes_per_epoch": 16,
    "valid_dataloader_opts": {"episodes": {"episodes_per_epoch": 2}},
    "few_shot": {
        "k_shots": [0, 1, 5],
        "episodes_per_task": 1,
        "query_utterances": 10,
    },
    "few_shot_voice_tasks": 2,
    "adaptation_search": {
        "rules": ["own", "adam"],
        "adam_lrs": [0.001],
        "modes": ["eval"],
        "steps": [2, 4],
        "k_shots": [5],
        "episodes_per_task": 1,
        "query_utterances": 4,
    },
}
# The CTC recipe's adaptation without transcripts (the attention recipes
# do not search it), at the quick run's size.
QUICK_CTC = {
    "unsupervised_search": {
        "rules": ["own", "adam"],
        "adam_lrs": [0.001],
        "steps": [2],
        "episodes_per_task": 1,
        "query_utterances": 4,
    },
}
# The attention recipes validate by beam search every epoch: their quick
# run keeps a budget that only checks the pipeline (3 epochs of 8).
QUICK_ATTENTION_BUDGET = {
    "joint_epochs": 3,
    "warm_start_epoch": 2,
    "episodes_per_epoch": 8,
}


def parse_args(argv):
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output_folder",
        default=None,
        help="where everything goes (default: results/SynthDigits/"
        "benchmark[_quick])",
    )
    parser.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated subset of {','.join(METHODS)}, or all "
        f"(default: {','.join(MAIN)})",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated training seeds (default: "
        f"{','.join(map(str, SEEDS))}; one with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the CI-sized smoke test (a few minutes; not the results)",
    )
    parser.add_argument(
        "--recipe",
        default="meta_asr",
        choices=sorted(RECIPES),
        help="meta_asr: the CTC model; meta_seq2seq: the attention model "
        "(joint CTC/attention, RNN decoder); meta_transformer: the same "
        "with a Conformer; meta_st: speech translation (attention, BLEU); "
        "their methods are subsets",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda:0, ...")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=YAML",
        help="an hparams override for every run (repeatable), e.g. "
        "--set adapt_in_train_mode=True",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="runs in parallel processes, the CPU threads shared among "
        "them (1: everything in this process)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: pool the results already in the output folder "
        "and write the tables and the report",
    )
    # A worker's run of one method and seed (run_all).
    parser.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads of each run (0: torch's default with --jobs 1, "
        "the cores shared among the runs otherwise); set it when other "
        "jobs share the machine",
    )
    args = parser.parse_args(argv)
    available = recipe_methods(args.recipe, METHODS)
    if args.methods is None:
        args.methods = ",".join(MAIN)
    if args.methods == "all":
        args.methods = ",".join(available)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.methods == ",".join(MAIN):  # the default: what the recipe has
        methods = recipe_methods(args.recipe, methods)
    unknown = sorted(set(methods) - set(available))
    if unknown:
        parser.error(
            f"unknown methods {unknown}; {args.recipe} has {available}"
        )
    args.methods = methods
    if args.seeds is None:
        args.seeds = SEEDS[:1] if args.quick else SEEDS
    else:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected KEY=YAML")
        args.overrides[key.strip()] = yaml.safe_load(value)
    common = _load_recipe(args.recipe).COMMON
    common = [common] if isinstance(common, str) else common
    known = set().union(
        *(layer_keys(f) for f in common),
        *(layer_keys(method_file(args, m)) for m in methods),
    )
    unknown = sorted(set(args.overrides) - known)
    if unknown:
        parser.error(f"--set {unknown}: not a setting of {methods}")
    if args.output_folder is None:
        name = "benchmark_quick" if args.quick else "benchmark"
        if args.recipe != "meta_asr":
            name += "_" + args.recipe.split("_", 1)[1]
        args.output_folder = os.path.join("results", "SynthDigits", name)
    return args


def method_overrides(args, method, seed):
    """The overrides of one method's run (its folders, the seed)."""
    folder = os.path.join(args.output_folder, f"seed{seed}")
    overrides = {
        "seed": seed,
        "output_folder": os.path.join(folder, method),
        "joint_folder": os.path.join(folder, "joint"),
        "data_folder": os.path.join(args.output_folder, "data"),
    }
    # A --set key only some methods have (inner_steps...) goes to those.
    known = set(layer_keys(COMMON)) | set(layer_keys(method_file(args, method)))
    if args.recipe != "meta_asr":  # its model file's keys
        known |= set(layer_keys(_load_recipe(args.recipe).COMMON[-1]))
    if args.quick:
        overrides.update(json.loads(json.dumps(QUICK)))
        if args.recipe == "meta_asr":
            overrides.update(json.loads(json.dumps(QUICK_CTC)))
        else:
            overrides.update(QUICK_ATTENTION_BUDGET)
    overrides.update(
        {
            k: v
            for k, v in json.loads(json.dumps(args.overrides)).items()
            if k in known
        }
    )
    return overrides


def main(argv=None):
    """Runs the benchmark.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments.

    Returns
    -------
    dict
        Pooled few-shot results per evaluation set.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.output_folder, exist_ok=True)
    if args.run_one:
        method, seed = args.run_one.split(":")
        _run_one(args, method, int(seed), args.threads)
        return {}
    order = [m for m in METHODS if m in args.methods]
    start = time.perf_counter()
    seconds = {} if args.report_only else run_all(args, order)
    seconds["total"] = round(time.perf_counter() - start, 1)

    pooled = {}
    for split, name in SETS.items():
        documents = []
        for method in order:
            runs = [
                os.path.join(
                    args.output_folder, f"seed{seed}", method, "few_shot", split
                )
                for seed in args.seeds
            ]
            runs = [load_results(r) for r in runs if os.path.isdir(r)]
            if runs:
                documents.append(pool_seeds(runs))
        if not documents:
            print(f"\n{name}: not available (see the log)")
            continue
        pooled[split] = merge_results(documents)
        validate_results(pooled[split])
        out = (
            args.output_folder
            if split == "test"
            else os.path.join(args.output_folder, split)
        )
        model = MODELS[args.recipe]
        seeds = ", ".join(map(str, args.seeds))
        title = f"SynthDigits{model}: {name} (seeds {seeds})"
        write_results(
            out, pooled[split]["protocol"], pooled[split]["results"], title
        )
        print()
        print(results_table(pooled[split]["results"], title=title))
    goals = load_script(
        os.path.join(HERE, "goals.py"), "synthdigits_meta_asr_goals"
    )
    command = (
        "python recipes/SynthDigits/meta_asr/run_benchmark.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
    )
    checks = goals.write_report(
        args.output_folder,
        args.seeds,
        order,
        pooled,
        SETS,
        command.strip(),
        None if args.report_only else seconds["total"] / 60,
    )
    print(
        "\nGoals (never worse than unadapted, the method claim): "
        + os.path.join(args.output_folder, "benchmark.md")
    )
    dev = meta_dev_report(args, order)
    write_json(
        os.path.join(args.output_folder, "benchmark.json"),
        {
            "methods": order,
            "seeds": args.seeds,
            "quick": args.quick,
            "device": args.device,
            "wall_seconds": seconds,
            "goals": checks,
            "meta_dev": dev,
        },
    )
    print("wall time per seed/method (s, includes training when not cached):")
    print(json.dumps(seconds))
    return pooled


def _run_one(args, method, seed, threads=0):
    """Runs one method with one seed, here."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    _load_recipe(args.recipe).run(
        method_file(args, method),
        {"device": args.device, "noprogressbar": True},
        method_overrides(args, method, seed),
    )
    return round(time.perf_counter() - start, 1)


def _run_worker(args, method, seed, threads):
    """Runs one method with one seed in a fresh process (``--run-one``).

    Returns
    -------
    float
        Its wall seconds.

    Raises
    ------
    RuntimeError
        When it fails (the message names its log).
    """
    command = [
        sys.executable,
        os.path.join(HERE, "run_benchmark.py"),
        "--run-one",
        f"{method}:{seed}",
        "--threads",
        str(threads),
        "--output_folder",
        args.output_folder,
        "--device",
        args.device,
        "--recipe",
        args.recipe,
    ]
    command += ["--quick"] if args.quick else []
    for item in args.set:
        command += ["--set", item]
    log = run_log(args, method, seed)
    os.makedirs(os.path.dirname(log), exist_ok=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fout:
        proc = subprocess.run(command, stdout=fout, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} seed {seed} failed: see {log}")
    return round(time.perf_counter() - start, 1)


def run_log(args, method, seed):
    """Where the log of one method and seed goes."""
    return os.path.join(args.output_folder, f"seed{seed}", f"{method}.log")


class Progress:
    """Plain progress lines on the terminal: what runs, what is done, ETA.

    Arguments
    ---------
    total : int
        Runs to do.
    jobs : int
        Runs at a time (for the estimate of the time left).
    out : file
        Where the lines go.

    Example
    -------
    >>> import io
    >>> out = io.StringIO()
    >>> progress = Progress(2, 1, out)
    >>> progress.started("joint", 1234, "log.txt")
    >>> progress.finished("joint", 1234, 60.0)
    >>> for line in out.getvalue().splitlines():
    ...     print(line.split("] ", 1)[1])
    started joint, seed 1234 (log: log.txt)
    done joint, seed 1234 in 1:00 (1/2); about 1:00 left
    """

    def __init__(self, total, jobs, out=sys.stdout):
        self.total = total
        self.jobs = max(jobs, 1)
        self.out = out
        self.start = time.perf_counter()
        self.done = []
        self.failed = []
        self.lock = threading.Lock()  # worker threads print one line each

    def _line(self, text):
        elapsed = time.perf_counter() - self.start
        with self.lock:
            self.out.write(f"[{_clock(elapsed)}] {text}\n")
            self.out.flush()

    def started(self, method, seed, log):
        """Says a run started, and where its log is."""
        self._line(f"started {method}, seed {seed} (log: {log})")

    def finished(self, method, seed, seconds):
        """Says a run is done, with the elapsed and estimated time left."""
        self.done.append(seconds)
        left = self.total - len(self.done) - len(self.failed)
        mean = sum(self.done) / len(self.done)
        estimate = _clock(mean * left / self.jobs) if left else "0:00"
        self._line(
            f"done {method}, seed {seed} in {_clock(seconds)} "
            f"({len(self.done)}/{self.total}); about {estimate} left"
        )

    def failed_run(self, method, seed, error, skipped=()):
        """Says a run failed (its log) and which runs are skipped with it."""
        self.failed.append((method, seed))
        self.failed.extend((m, seed) for m in skipped)
        more = f"; skipped with it: {', '.join(skipped)}" if skipped else ""
        self._line(f"FAILED {method}, seed {seed}: {error}{more}")


def _clock(seconds):
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def run_all(args, order):
    """Runs every (seed, method), each seed's joint model before the others.

    With ``--jobs`` > 1 the runs go to that many worker processes (their
    logs in ``DIR/seed<S>/<method>.log``), the CPU threads shared among
    them; the corpora are prepared first, here. Progress goes to the
    terminal; a failed run is named with its log and the job goes on with
    the runs that do not need it (every method needs its seed's joint
    model).

    Returns
    -------
    dict
        Wall seconds per ``seed/method`` (failed runs are left out).
    """
    seconds = {}
    first = [m for m in order if m == "joint"] or order[:1]
    progress = Progress(len(order) * len(args.seeds), args.jobs)
    if args.quick:
        budget = {**QUICK}
        if args.recipe != "meta_asr":
            budget.update(QUICK_ATTENTION_BUDGET)
        epochs, start = budget["joint_epochs"], budget["warm_start_epoch"]
        print(
            "--quick: a smoke test of the whole pipeline on a small corpus "
            f"and budget ({epochs} epochs of {budget['episodes_per_epoch']} "
            f"episodes, the meta-learners the last {epochs - start}); its "
            "figures are not the benchmark's results.",
            flush=True,
        )
    if args.jobs <= 1:
        for seed in args.seeds:
            for method in first + [m for m in order if m not in first]:
                progress.started(method, seed, "this terminal")
                seconds[f"{seed}/{method}"] = _run_one(
                    args, method, seed, args.threads
                )
                progress.finished(method, seed, seconds[f"{seed}/{method}"])
        return seconds
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.jobs)
    # The data once, before the workers read it.
    # (the CTC recipe's corpus, and what the recipe adds to it: meta_st's
    # manifests and units).
    prepare = getattr(
        _load_recipe(args.recipe), "prepare_data", _load_recipe().prepare_data
    )
    prepare(method_overrides(args, "joint", args.seeds[0]))
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:

        def start(method, seed):
            progress.started(method, seed, run_log(args, method, seed))
            return _run_worker(args, method, seed, threads)

        def submit(method, seed):
            pending[pool.submit(start, method, seed)] = (seed, method)

        pending = {}
        for seed in args.seeds:
            submit(first[0], seed)
        while pending:
            done, _ = concurrent.futures.wait(
                pending, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                seed, method = pending.pop(future)
                others = [m for m in order if m != method]
                try:
                    seconds[f"{seed}/{method}"] = future.result()
                except RuntimeError as err:
                    needed = method == first[0]
                    progress.failed_run(
                        method, seed, err, others if needed else ()
                    )
                    continue
                progress.finished(method, seed, seconds[f"{seed}/{method}"])
                if method == first[0]:
                    for other in others:
                        submit(other, seed)
    return seconds


def _learning_curve(path, offset):
    """(updates of the initialisation, adapted meta-dev CER) per epoch."""
    curve = []
    if not os.path.exists(path):
        return curve
    with open(path, encoding="utf-8") as fin:
        for line in fin:
            fields = dict(
                part.split(": ", 1)
                for part in line.replace(" - ", ", ").strip().split(", ")
                if ": " in part
            )
            if "updates" in fields and "valid CER" in fields:
                curve.append(
                    (
                        offset + int(fields["updates"]),
                        float(fields["valid CER"]),
                    )
                )
    return curve


def meta_dev_report(args, order):
    """Meta-dev results of the run: learning curves and the search.

    Writes ``DIR/meta_dev.{md,png}``: for each method, the adapted
    meta-dev CER (own rule, ``eval_inner_steps`` steps) against the number
    of updates of its initialisation (a meta-learner's curve starts at the
    joint model's warm start), mean over seeds; and the best meta-dev CER
    of its adaptation search with the settings chosen.

    Returns
    -------
    dict
        Method to ``curve`` and ``search`` entries.
    """
    from speechbrain_meta.evaluation.selection import choose_setting
    from speechbrain_meta.reports import (
        describe_adaptation,
        markdown_table,
        pyplot,
        save_figure,
    )

    hparams, _ = load_layered_hparams(
        os.path.join(HERE, "hparams", "joint.yaml"),
        os.path.join(HERE, "hparams", "models", "common.yaml"),
        method_overrides(args, "joint", args.seeds[0]),
    )
    per_epoch = (
        hparams["episodes_per_epoch"] // hparams["grad_accumulation_factor"]
    )
    warm = hparams["warm_start_epoch"] * per_epoch
    report, rows = {}, []
    fig, ax = pyplot().subplots(figsize=(7.5, 4.2))
    for method in order:
        curves, best = [], []
        for seed in args.seeds:
            folder = os.path.join(args.output_folder, f"seed{seed}", method)
            offset = 0 if method == "joint" else warm
            curve = _learning_curve(
                os.path.join(folder, "train_log.txt"), offset
            )
            if curve:
                curves.append(curve)
            search = os.path.join(folder, "adaptation_search.json")
            if os.path.exists(search):
                rule = hparams["adaptation_search"]
                best.append(
                    choose_setting(
                        load_results(search)["scores"],
                        rule["steps"],
                        rule.get("cliff", 0.02),
                        rule.get("cliff_factor", 2),
                    )[1]
                )
        entry = {}
        if curves:
            length = min(len(c) for c in curves)
            mean = [
                (curves[0][i][0], sum(c[i][1] for c in curves) / len(curves))
                for i in range(length)
            ]
            entry["curve"] = mean
            ax.plot(*zip(*mean), marker=".", label=method)
        if best:
            entry["search"] = best
            cer = sum(b["cer"] for b in best) / len(best)
            chosen = ", ".join(
                describe_adaptation({**b["candidate"], "steps": b["steps"]})
                for b in best
            )
            rows.append([method, f"{100 * cer:.1f}", chosen])
        report[method] = entry
    ax.set_xlabel("updates of the initialisation")
    ax.set_ylabel("meta-dev CER % (selection criterion)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save_figure(fig, os.path.join(args.output_folder, "meta_dev_curves.png"))
    table = markdown_table(
        [
            "method",
            "best meta-dev CER % (k=5, mean over seeds)",
            "chosen per seed",
        ],
        rows,
    )
    with open(
        os.path.join(args.output_folder, "meta_dev.md"), "w", encoding="utf-8"
    ) as fout:
        fout.write(table)
    print("\nMeta-dev (adaptation search):\n" + table)
    return report


if __name__ == "__main__":
    main()
