#!/usr/bin/env python3
"""The real-corpus recipes' data preparation at the corpora's real size.

Builds, from small generated files, trees of the size and shape of the real
corpora (every audio file a hard link to one short clip: the prepare
scripts open each one as they would a real file):

* LibriSpeech ``train-clean-100``: 251 speakers, 585 chapters, 28,539
  utterances (flac, one ``.trans.txt`` per chapter);
* a Common Voice language whose ``train.tsv`` has 100,000 rows of 2,000
  speakers (mp3 clips), read in language mode with the recipe's default
  sample of 5,000 rows to convert;
* Google Speech Commands v0.02: 105,829 clips of 35 words, the two lists
  holding about a tenth each, and the background noise folder.

Each preparation runs in a fresh process: wall time and peak memory (its
maximum resident set). Then the episode sampler of the LibriSpeech recipe
(``TaskSampler``, tasks are speakers) over the prepared manifest: the
manifest's loading time (every row checked), the sampler's memory
(``tracemalloc`` peak while it is built) and its episode rate (episodes of
10 + 10 utterance indices a second). There is no peer: these are absolute
figures, the basis of the recipes' READMEs. ``--scale`` shrinks every
count (the tests run it at 1 %). Prints a markdown table and writes
``DIR/prepare_scale.json``.

    python benchmarks/prepare_scale.py [--scale 1.0] [--json DIR]
        [--work DIR] [--workers 2]

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "recipes")
SAMPLE_RATE = 16000
WORDS = (
    "yes no up down left right on off stop go zero one two three four five "
    "six seven eight nine bed bird cat dog happy house marvin sheila tree "
    "wow backward forward follow learn visual"
).split()


def _clip(path, seconds, rate, fmt):
    rng = np.random.default_rng(0)
    samples = (0.05 * rng.standard_normal(int(seconds * rate))).astype(
        np.float32
    )
    sf.write(path, samples, rate, format=fmt)
    return path


LINKS_PER_FILE = 60000  # ext4 allows 65,000 hard links to one file


def _link(source, target, index=0):
    """Hard-links ``target`` to ``source`` (or to a copy of it: one per
    ``LINKS_PER_FILE`` links, ``index`` counting them)."""
    copy = index // LINKS_PER_FILE
    if copy:
        stem, ext = os.path.splitext(source)
        source_copy = f"{stem}_{copy}{ext}"
        if not os.path.exists(source_copy):
            shutil.copyfile(source, source_copy)
        source = source_copy
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.link(source, target)


def librispeech_tree(root, scale):
    """``train-clean-100`` shaped: 251 speakers, 585 chapters, 28,539 files."""
    split = os.path.join(root, "train-clean-100")
    clip = _clip(os.path.join(root, "clip.flac"), 0.5, SAMPLE_RATE, "FLAC")
    speakers = max(2, round(251 * scale))
    chapters = max(speakers, round(585 * scale))
    utterances = max(chapters, round(28539 * scale))
    per_chapter = [utterances // chapters] * chapters
    for i in range(utterances % chapters):
        per_chapter[i] += 1
    for c, n in enumerate(per_chapter):
        spk, chapter = 100 + c % speakers, 1000 + c
        folder = os.path.join(split, str(spk), str(chapter))
        lines = []
        for u in range(n):
            utt = f"{spk}-{chapter}-{u:04d}"
            _link(
                clip,
                os.path.join(folder, utt + ".flac"),
                sum(per_chapter[:c]) + u,
            )
            lines.append(f"{utt} A FEW WORDS OF TEXT\n")
        with open(os.path.join(folder, f"{spk}-{chapter}.trans.txt"), "w") as f:
            f.writelines(lines)
    return {"speakers": speakers, "chapters": chapters, "files": utterances}


def common_voice_tree(root, scale):
    """A language with 100,000 ``train.tsv`` rows of 2,000 speakers."""
    lang = os.path.join(root, "xx")
    clip = _clip(os.path.join(root, "clip.mp3"), 1.0, 48000, "MP3")
    rows = max(100, round(100000 * scale))
    speakers = max(2, round(2000 * scale))
    rng = random.Random(0)
    header = ["client_id", "path", "sentence", "accents", "locale"]
    tables = {"train": [], "dev": [], "test": []}
    for i in range(rows):
        name = f"common_voice_xx_{i}.mp3"
        _link(clip, os.path.join(lang, "clips", name), i)
        client = f"{i * speakers // rows:064x}"  # ordered by speaker
        words = " ".join(rng.choice(WORDS) for _ in range(6))
        tables["train"].append(
            [client, name, words.capitalize() + ".", "", "xx"]
        )
    for split, table in tables.items():  # dev and test: header only
        with open(os.path.join(lang, f"{split}.tsv"), "w") as f:
            f.write("\t".join(header) + "\n")
            f.writelines("\t".join(r) + "\n" for r in table)
    return {"rows": rows, "speakers": speakers, "files": rows}


def speech_commands_tree(root, scale):
    """v0.02 shaped: 105,829 clips of 35 words, the lists, the noise."""
    clip = _clip(os.path.join(root, "clip.wav"), 1.0, SAMPLE_RATE, "WAV")
    total = max(len(WORDS) * 4, round(105829 * scale))
    lists = {"validation": [], "testing": []}
    for i in range(total):
        word = WORDS[i % len(WORDS)]
        speaker = f"{(i // len(WORDS)) // 4:08x}"
        name = f"{word}/{speaker}_nohash_{(i // len(WORDS)) % 4}.wav"
        _link(clip, os.path.join(root, name), i)
        bucket = int(speaker, 16) % 10
        if bucket == 0:
            lists["validation"].append(name)
        elif bucket == 1:
            lists["testing"].append(name)
    for split, names in lists.items():
        with open(os.path.join(root, f"{split}_list.txt"), "w") as f:
            f.writelines(n + "\n" for n in names)
    noise = os.path.join(root, "_background_noise_")
    os.makedirs(noise)
    for n in range(6):
        _clip(os.path.join(noise, f"noise_{n}.wav"), 60.0, SAMPLE_RATE, "WAV")
    return {"files": total, "words": len(WORDS)}


PREPARE = {
    "LibriSpeech": (
        "LibriSpeech/speaker_adaptation",
        "from librispeech_prepare import prepare_librispeech as p; "
        "p({data!r}, {out!r}, ['train-clean-100'], [], [])",
    ),
    "CommonVoice": (
        "CommonVoice/meta_asr",
        "from common_voice_prepare import prepare_common_voice as p; "
        "p({data!r}, {out!r}, ['xx'], [], [], "
        "max_utterances_per_language=5000, num_workers={workers})",
    ),
    "Google-speech-commands": (
        "Google-speech-commands/few_shot_kws",
        "from prepare_GSC import prepare_GSC as p; "
        "p({data!r}, {out!r}, ['yes', 'no', 'up', 'down', 'left', 'right', "
        "'on', 'off', 'stop', 'go'], ['bed', 'bird', 'cat', 'dog', 'happy'])",
    ),
}


def run_prepare(corpus, data, out, workers):
    """Wall seconds and peak resident MiB of one preparation (own process)."""
    recipe, call = PREPARE[corpus]
    code = (
        "import resource, sys, time; "
        f"sys.path.insert(0, {os.path.join(RECIPES, recipe)!r}); "
        "start = time.perf_counter(); "
        + call.format(data=data, out=out, workers=workers)
        + "; print('SECONDS', time.perf_counter() - start); "
        "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF)"
        ".ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    figures = {}
    for line in done.stdout.splitlines():
        if line.startswith("SECONDS"):
            figures["seconds"] = round(float(line.split()[1]), 1)
        if line.startswith("PEAK_KIB"):
            own, children = (int(v) for v in line.split()[1:])
            figures["peak_mib"] = round(own / 1024, 1)
            figures["worker_peak_mib"] = round(children / 1024, 1)
    return figures


def sampler_figures(manifest, episodes=2000):
    """Loading, memory and episode rate of the LibriSpeech task sampler."""
    from speechbrain_meta.data.manifest import load_manifest
    from speechbrain_meta.data.sampler import TaskSampler

    sys.path.insert(0, os.path.join(RECIPES, "LibriSpeech/speaker_adaptation"))
    from librispeech_prepare import speakers_from_chapters

    start = time.perf_counter()
    dataset, _ = load_manifest(manifest)
    speakers_from_chapters(dataset, manifest)  # as the recipe: speakers
    load = time.perf_counter() - start
    tracemalloc.start()
    sampler = TaskSampler(
        dataset,
        group_by="spk_id",
        n_support=10,
        n_query=10,
        episodes_per_epoch=episodes,
        seed=1,
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    start = time.perf_counter()
    n = sum(1 for _ in sampler)
    rate = n / (time.perf_counter() - start)
    return {
        "rows": len(dataset),
        "tasks": len(sampler.tasks),
        "load_seconds": round(load, 1),
        "sampler_mib": round(peak / 2**20, 2),
        "episodes_per_second": round(rate),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", default="results/benchmarks")
    parser.add_argument("--work", default=None, help="where the trees go")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(dir=args.work)
    builders = {
        "LibriSpeech": librispeech_tree,
        "CommonVoice": common_voice_tree,
        "Google-speech-commands": speech_commands_tree,
    }
    rows = []
    try:
        for corpus, build in builders.items():
            data = os.path.join(work, corpus)
            os.makedirs(data)
            start = time.perf_counter()
            shape = build(data, args.scale)
            built = time.perf_counter() - start
            out = os.path.join(work, corpus + "_prepared")
            row = {"corpus": corpus, "shape": shape}
            row["build_seconds"] = round(built, 1)
            row.update(run_prepare(corpus, data, out, args.workers))
            if corpus == "LibriSpeech":
                row["sampler"] = sampler_figures(os.path.join(out, "train.csv"))
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine = (
        f"{os.cpu_count()} CPU cores ({platform.machine()}), "
        f"Python {platform.python_version()}"
    )
    print(f"\n{machine}, scale {args.scale}\n")
    print("| corpus | files | prepare s | peak MiB (process / children) |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['corpus']} | {r['shape']['files']:,} | {r['seconds']} | "
            f"{r['peak_mib']} / {r['worker_peak_mib']} |"
        )
    for r in rows:
        if "sampler" in r:
            s = r["sampler"]
            print(
                f"\nTaskSampler over {s['rows']:,} rows, {s['tasks']} speakers:"
                f" manifest loaded and checked in {s['load_seconds']} s, "
                f"{s['sampler_mib']} MiB, {s['episodes_per_second']:,} "
                "episodes/s (10 + 10 indices)"
            )
    os.makedirs(args.json, exist_ok=True)
    document = {
        "machine": machine,
        "scale": args.scale,
        "max_rss_kib_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "rows": rows,
    }
    with open(os.path.join(args.json, "prepare_scale.json"), "w") as f:
        json.dump(document, f, indent=1)
    return document


if __name__ == "__main__":
    main()
