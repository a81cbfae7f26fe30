"""Every code block of README.md and of the recipe READMEs, run as written.

Each block a user would copy is run here with the names and paths it
mentions created by the test: the Python blocks are executed (the recipe
conversion blocks with the README's own yaml over a tiny user recipe, the
``AdaptiveASR`` block on a model the quick main job exported); the console
block's commands are run and their output compared line by line in form
(the figures differ); each shell command is run as far as it can be in a
test: a recipe's ``train.py`` line loads that recipe's hparams with the
line's overrides (the training itself is run by the recipe tests,
``tests/recipes/*.csv``), ``run_benchmark.py`` and ``ablation.py`` lines go
through their argument checks, a requirements file must exist and parse.
A block no rule here knows fails the test: a new block needs a runner.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import soundfile as sf
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

import speechbrain_meta
from speechbrain_meta.layered_yaml import load_layered_hparams

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from tiny_asr import MODELS, TinyASR, make_datasets  # noqa: E402

READMES = ["README.md"] + sorted(
    os.path.relpath(os.path.join(d, "README.md"), ROOT)
    for d, _, files in os.walk(os.path.join(ROOT, "recipes"))
    if "README.md" in files
)
PACKAGE = os.path.dirname(speechbrain_meta.__file__)


def code_blocks(readme):
    """The fenced code blocks of a markdown file: (language, line, text)."""
    blocks, lang, lines, start = [], None, [], 0
    with open(os.path.join(ROOT, readme), encoding="utf-8") as fin:
        for number, line in enumerate(fin, 1):
            if line.startswith("```"):
                if lang is None:
                    lang, lines, start = line[3:].strip() or "text", [], number
                else:
                    blocks.append((lang, start, "".join(lines)))
                    lang = None
            elif lang is not None:
                lines.append(line)
    return blocks


def _block(readme, marker):
    """The one block of ``readme`` that contains ``marker``."""
    found = [b for b in code_blocks(readme) if marker in b[2]]
    assert len(found) == 1, f"{readme}: {len(found)} blocks with {marker!r}"
    return found[0][2]


# Blocks run by the tests below, by a string only they contain.
PYTHON_BLOCKS = {
    'source="results/SynthDigits': "test_adaptive_asr_block",
    'source="my_hub_model"': "tests/integration/test_hub_models.py",
    "meta_transfer_hub(": "tests/integration/test_hub_task_params.py",
    "asr.adapt(untranscribed_wavs)": "tests/integration/test_hub_models.py",
    "asr_brain = Brain(": "test_recipe_conversion_blocks",
    "class FOMAML(MAML)": "test_writing_an_algorithm_block",
    "insert_adapters(": "test_meta_transfer_blocks",
    "FewShotProtocol(": "test_recipe_conversion_blocks",
}
YAML_BLOCKS = {
    "speechbrain_meta/hparams/maml.yaml": "test_recipe_conversion_blocks",
    "speechbrain_meta/hparams/metasgd.yaml": "test_recipe_conversion_blocks",
    "MetaTransferBrain": "test_meta_transfer_blocks",
}


def test_every_block_has_a_runner():
    for readme in READMES:
        for lang, line, text in code_blocks(readme):
            where = f"{readme}:{line}"
            if lang == "python":
                known = [m for m in PYTHON_BLOCKS if m in text]
            elif lang == "yaml":
                known = [m for m in YAML_BLOCKS if m in text]
            elif lang == "console":
                known = ["$ speechbrain-meta-"] * (
                    "$ speechbrain-meta-" in text
                )
            elif lang == "bash":
                known = ["shell"]  # every line goes to test_shell_commands
            else:
                known = []
            assert len(known) == 1, f"{where}: no test runs this {lang} block"


# ---------------------------------------------------------------- shell


def _commands(text):
    """Shell commands of a block: continuations joined, comments dropped."""
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            yield shlex.split(line)


QUICK_START = {
    # The suite itself (CI runs it), and the hour-long main job whose
    # --quick form the quick_benchmark fixture runs through the same
    # run_benchmark.main: both must exist and parse as bash.
    ("bash", "scripts/run_tests.sh"),
    ("bash", "scripts/run_main.sh"),
}


def _check_train_line(recipe, argv, tmp_path):
    """A recipe's ``train.py`` line loads its hparams with the overrides."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = load_hyperpyyaml(overrides or "{}") if overrides else {}
    for key in list(overrides):
        if isinstance(overrides[key], str) and "/path/to/" in overrides[key]:
            overrides[key] = str(tmp_path / "data")
        if overrides[key] == "...":
            overrides[key] = str(tmp_path / "data")
    overrides.setdefault("output_folder", str(tmp_path / "out"))
    hparams_file = os.path.join(recipe, hparams_file)
    common = os.path.join(recipe, "hparams", "models", "common.yaml")
    if not os.path.exists(common):  # shared files of another recipe
        common = _load_script(os.path.join(recipe, "train.py")).COMMON
    if "<method>" in hparams_file:  # one line for every method file
        folder = os.path.dirname(hparams_file)
        files = [
            os.path.join(folder, f)
            for f in sorted(os.listdir(folder))
            if f.endswith(".yaml")
        ]
    else:
        files = [hparams_file]
    for path in files:
        load_layered_hparams(path, common, overrides)
    return run_opts


def _load_script(path):
    import importlib.util

    name = "readme_" + re.sub(r"\W", "_", os.path.relpath(path, ROOT))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(path))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


def _shell_cases():
    for readme in READMES:
        for lang, line, text in code_blocks(readme):
            if lang == "bash":
                yield pytest.param(readme, text, id=f"{readme}:{line}")


@pytest.mark.parametrize("readme,text", list(_shell_cases()))
def test_shell_commands(readme, text, tmp_path, monkeypatch):
    cwd = os.path.dirname(os.path.join(ROOT, readme))
    monkeypatch.chdir(tmp_path)  # whatever the hparams create goes here
    for argv in _commands(text):
        if argv[0] == "cd":
            cwd = os.path.join(cwd, argv[1])
        elif tuple(argv) in QUICK_START:
            script = os.path.join(cwd, argv[1])
            assert os.access(script, os.R_OK), script
            subprocess.run(["bash", "-n", script], check=True)
        elif argv[:2] == ["pip", "install"]:
            if argv[2] == "-r":
                from packaging.requirements import Requirement

                with open(os.path.join(cwd, argv[3])) as fin:
                    for req in fin:
                        if req.strip() and not req.startswith("#"):
                            Requirement(req.strip())
            else:  # the package itself: tests/end_to_end/test_packaging.py
                assert argv[2:] in (["speechbrain-meta"], ["."]), argv
        elif argv[0] == "torchrun" or argv[:2] == ["python", "train.py"]:
            at = argv.index("train.py")
            assert os.path.exists(os.path.join(cwd, "train.py"))
            _check_train_line(cwd, argv[at + 1 :], tmp_path)
        elif argv[:2] == ["python", "run_benchmark.py"]:
            module = _load_script(os.path.join(cwd, "run_benchmark.py"))
            args = module.parse_args(argv[2:])
            assert args.methods and args.seeds
        elif argv[:2] == ["python", "hub_meta_transfer.py"]:
            module = _load_script(os.path.join(cwd, "hub_meta_transfer.py"))
            args = module.parse_args(argv[2:])
            assert args.benchmark_folder and args.output_folder
        elif argv[:2] == ["python", "ablation.py"]:
            module = _load_script(os.path.join(cwd, "ablation.py"))
            args = module.parse_args(argv[2:])
            assert args.variants
        else:
            pytest.fail(f"{readme}: no check for the command {argv}")


# ----------------------------------------------- a user's recipe, converted


def _top_level_keys(text):
    return set(re.findall(r"^([A-Za-z_][\w]*):", text, flags=re.M))


def _merge_yaml(base, snippet):
    """``base`` without the top-level keys ``snippet`` sets, then it."""
    keys, entries, keep = _top_level_keys(snippet), [], True
    for line in base.splitlines(keepends=True):
        match = re.match(r"([A-Za-z_]\w*):", line)
        if match:
            keep = match.group(1) not in keys
        if keep:
            entries.append(line)
    snippet = snippet.replace(
        "/path/to/speechbrain_meta/hparams/", os.path.join(PACKAGE, "hparams/")
    )
    return "".join(entries) + snippet


def _user_base_yaml(folder):
    """A user's own recipe yaml: a tiny CRDNN CTC model, its optimiser,
    epochs, checkpointer and pretrainer (files written here)."""
    return (
        MODELS["crdnn"]
        + f"""
opt_class: !name:torch.optim.Adam
    lr: 0.001
epoch_counter: !new:speechbrain.utils.epoch_loop.EpochCounter
    limit: 1
checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer
    checkpoints_dir: {folder}/save
    recoverables:
        normalize: !ref <normalize>
        encoder: !ref <encoder>
        ctc_lin: !ref <ctc_lin>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    collect_in: {folder}/pretrained
    loadables:
        normalize: !ref <normalize>
        encoder: !ref <encoder>
        ctc_lin: !ref <ctc_lin>
    paths:
        normalize: {folder}/trained/normalize.ckpt
        encoder: {folder}/trained/encoder.ckpt
        ctc_lin: {folder}/trained/ctc_lin.ckpt
"""
    )


@pytest.fixture(scope="module")
def tone_sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme_tones")
    # 32 utterances per task: the protocol block's k = 10 + 20 query.
    return make_datasets(
        str(folder),
        n_train_tasks=6,
        n_dev_tasks=2,
        n_test_tasks=2,
        utts_per_task=32,
        seed=7,
    )


def _namespace(hparams, tone_sets):
    return {
        "ASR": TinyASR,
        "hparams": hparams,
        "run_opts": {"device": "cpu"},
        "train_data": tone_sets["train"],
        "valid_data": tone_sets["dev"],
        "test_data": tone_sets["test"],
    }


@pytest.mark.parametrize(
    "fragment", ["speechbrain_meta/hparams/maml.yaml", "metasgd.yaml"]
)
def test_recipe_conversion_blocks(fragment, tone_sets, tmp_path, monkeypatch):
    """The README's yaml over a user's recipe, then its fit and protocol
    blocks, as written: the meta Brain trains and is evaluated."""
    monkeypatch.chdir(tmp_path)
    yaml_text = _block("README.md", fragment)
    if "metasgd" in fragment:  # the episodes are the first block's
        first = _block("README.md", "speechbrain_meta/hparams/maml.yaml")
        yaml_text = first.split("meta:")[0] + yaml_text
        yaml_text += first[first.index("train_dataloader_opts") :]
    hparams = load_hyperpyyaml(
        _merge_yaml(_user_base_yaml(tmp_path), yaml_text)
    )
    namespace = _namespace(hparams, tone_sets)
    params = torch.nn.ModuleDict(hparams["modules"]).parameters
    start = [p.detach().clone() for p in params()]
    exec(_block("README.md", "asr_brain = Brain("), namespace)
    brain = namespace["asr_brain"]
    assert isinstance(brain, speechbrain_meta.MetaBrain)
    # One outer step per grad_accumulation_factor episodes (tasks).
    tasks_per_step = hparams.get("grad_accumulation_factor", 1)
    assert brain.optimizer_step == 200 // tasks_per_step
    moved = [not torch.equal(a, b.detach()) for a, b in zip(start, params())]
    assert all(moved)
    if "metasgd" in fragment:
        assert brain.update_rule is not None
        # The rates learned: they left their start, log(init_lr: 0.03).
        start_rate = torch.tensor(0.03).log()
        rates = list(brain.update_rule.parameters())
        assert rates and not all(
            torch.allclose(r, start_rate.expand_as(r)) for r in rates
        )
        return
    exec(_block("README.md", "FewShotProtocol("), namespace)
    rows = namespace["rows"]
    assert [row["k_shot"] for row in rows] == [0, 1, 5, 10]
    assert all(row["cer_mean"] >= 0 for row in rows)  # CER may pass 1
    assert os.listdir(tmp_path / "results" / "few_shot")


def test_writing_an_algorithm_block():
    namespace = {}
    exec(_block("README.md", "class FOMAML(MAML)"), namespace)
    from speechbrain_meta.algorithms import FOMAML
    from speechbrain_meta.inner import InnerLoop

    mine = namespace["FOMAML"](InnerLoop(inner_steps=2, inner_lr=0.1))
    theirs = FOMAML(InnerLoop(inner_steps=2, inner_lr=0.1))
    assert mine.inner_loop.first_order and theirs.inner_loop.first_order
    for key in ("inner_steps", "first_order"):
        assert getattr(mine.inner_loop, key) == getattr(theirs.inner_loop, key)


def test_meta_transfer_blocks(tone_sets, tmp_path, monkeypatch):
    """The meta-transfer yaml and block: adapters into a pretrained model,
    only task parameters train, a task state saves and loads."""
    monkeypatch.chdir(tmp_path)
    base = _user_base_yaml(tmp_path)
    trained = load_hyperpyyaml(base)  # "your pretrained model"
    os.makedirs(tmp_path / "trained")
    batch = next(
        iter(
            sb.dataio.dataloader.make_dataloader(
                tone_sets["train"], batch_size=8
            )
        )
    )
    wavs, lens = batch.sig
    trained["normalize"](trained["compute_features"](wavs), lens)  # statistics
    trained["normalize"]._save(tmp_path / "trained" / "normalize.ckpt")
    for name in ("encoder", "ctc_lin"):
        torch.save(
            trained[name].state_dict(), tmp_path / "trained" / f"{name}.ckpt"
        )
    first = _block("README.md", "speechbrain_meta/hparams/maml.yaml")
    yaml_text = first[first.index("train_dataloader_opts") :]
    yaml_text += _block("README.md", "MetaTransferBrain")
    hparams = load_hyperpyyaml(_merge_yaml(base, yaml_text))
    namespace = _namespace(hparams, tone_sets)
    test = tone_sets["test"]
    with test.output_keys_as(["spk_id"]):
        speaker = sorted({item["spk_id"] for item in test})[0]
    speaker_data = test.filtered_sorted(
        key_test={"spk_id": lambda s: s == speaker}, select_n=5
    )
    loader = sb.dataio.dataloader.make_dataloader(speaker_data, batch_size=5)
    namespace["speaker_support"] = next(iter(loader))
    exec(_block("README.md", "insert_adapters("), namespace)
    brain = namespace["brain"]
    assert isinstance(brain, speechbrain_meta.MetaTransferBrain)
    # The pretrained weights were loaded, and the backbone stayed frozen.
    state = trained["encoder"].state_dict()
    for key, value in hparams["encoder"].state_dict().items():
        if key in state:
            assert torch.equal(value, state[key]), key
    modules = torch.nn.ModuleDict(hparams["modules"])
    trainable = [n for n, p in modules.named_parameters() if p.requires_grad]
    assert trainable and all("task_" in n for n in trainable)
    assert (tmp_path / "spk_0042.pt").exists()


# ------------------------------------------------- inference, as a user


def _copy_voice(quick_benchmark, folder, count, start=0, texts=True):
    import csv

    _, out, _ = quick_benchmark
    with open(out / "data" / "test_voices.csv") as f:
        rows = list(csv.DictReader(f))
    voice = sorted({r["spk_id"] for r in rows})[0]
    rows = [r for r in rows if r["spk_id"] == voice][start : start + count]
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, row in enumerate(rows, start):
        audio, rate = sf.read(
            row["wav"].replace("$data_root", str(out / "data"))
        )
        path = os.path.join(folder, f"es_co_{i:03d}.wav")
        sf.write(path, audio, rate)
        if texts:
            with open(path[:-4] + ".txt", "w") as f:
                f.write(row["wrd"])
        paths.append((path, row["wrd"]))
    return paths


def test_adaptive_asr_block(quick_benchmark, tmp_path, monkeypatch):
    _, out, _ = quick_benchmark
    monkeypatch.chdir(tmp_path)
    shutil.copytree(
        out / "seed1234" / "fomaml" / "inference",
        "results/SynthDigits/benchmark/seed1234/fomaml/inference",
    )
    support = _copy_voice(quick_benchmark, "support", 10)
    (new,) = _copy_voice(quick_benchmark, "new", 1, start=10, texts=False)
    os.rename(new[0], "new/utt_0.wav")
    wavs = torch.stack(
        [
            torch.as_tensor(sf.read(p, dtype="float32")[0][:8000])
            for p, _ in support[:2]
        ]
    )
    namespace = {
        "support_wavs": [p for p, _ in support],
        "support_texts": [t for _, t in support],
        "wavs": wavs,
        "wav_lens": torch.ones(2),
    }
    exec(_block("README.md", 'source="results/SynthDigits'), namespace)
    assert isinstance(namespace["state"].info["why"], str)
    assert os.path.exists("spk_0042.pt")
    assert len(namespace["words"]) == 2


def _form(line):
    """What a printed line says, without its figures and names."""
    return re.split(r"[\d:\t]", line, maxsplit=1)[0]


def _run_console_block(text, cwd):
    """Runs each ``$ speechbrain-meta-...`` line of a console block in
    ``cwd`` and checks that it prints lines of the same forms as the block
    shows; other ``$`` lines (a listing) are not run. Returns how many ran.
    """
    commands, shown = [], []
    for line in text.splitlines():
        if line.startswith("$ "):
            commands.append(line[2:])
            shown.append([])
        else:
            shown[-1].append(line)
    ran = 0
    for command, expected in zip(commands, shown):
        if not command.startswith("speechbrain-meta-"):
            continue
        name = shlex.split(command)[0].replace("speechbrain-meta-", "")
        printed = subprocess.run(
            f"{shlex.quote(sys.executable)} -m speechbrain_meta.cli {name} "
            + command.split(" ", 1)[1],
            shell=True,
            cwd=cwd,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": ROOT},
        )
        assert printed.returncode == 0, printed.stderr[-2000:]
        lines = printed.stdout.splitlines()
        assert sorted(map(_form, lines)) == sorted(map(_form, expected)), (
            command,
            printed.stdout,
        )
        ran += 1
    return ran


def test_console_block(quick_benchmark, tmp_path):
    """Each ``$`` line of the console block runs, and prints lines of the
    same forms as the README shows."""
    _, out, _ = quick_benchmark
    text = _block("README.md", "--eval-split 0.2")
    shutil.copytree(
        out / "seed1234" / "fomaml" / "inference", tmp_path / "fomaml_model"
    )
    _copy_voice(quick_benchmark, tmp_path / "support_es_co", 10)
    _copy_voice(quick_benchmark, tmp_path / "new", 4, start=12, texts=False)
    _copy_voice(quick_benchmark, tmp_path / "one_utterance", 1, start=20)
    assert _run_console_block(text, tmp_path) == text.count("\n$ ") + 1


def test_console_block_without_transcripts(quick_benchmark, tmp_path):
    """The console block of the adaptation from audio alone: each
    ``speechbrain-meta-`` line runs and prints lines of the same forms, on
    the quick joint model made to adapt without transcripts as the
    README's model does (10 steps; the quick search may choose 0)."""
    _, out, _ = quick_benchmark
    text = _block("README.md", "$ ls support_es_co")
    model = tmp_path / "joint_model"
    shutil.copytree(out / "seed1234" / "joint" / "inference", model)
    yaml_path = model / "hyperparams.yaml"
    yaml_text = yaml_path.read_text()
    head, sep, tail = yaml_text.partition("unsupervised_adaptation:\n")
    assert sep, "the export has no unsupervised_adaptation"
    tail = re.sub(r"steps: \d+", "steps: 10", tail, count=1)
    yaml_path.write_text(head + sep + tail)
    _copy_voice(quick_benchmark, tmp_path / "support_es_co", 10, texts=False)
    _copy_voice(quick_benchmark, tmp_path / "new", 2, start=12, texts=False)
    assert _run_console_block(text, tmp_path) == 4
