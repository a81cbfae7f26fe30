"""Command-line adaptation and transcription with an exported model.

::

    speechbrain-meta-adapt --model DIR --support DIR_OR_CSV --out STATE
                           [--steps N] [--eval-split 0.2] [--unsupervised]
                           [--device cpu]
    speechbrain-meta-transcribe --model DIR [--task-state STATE | --adapt-each]
                                FILE_OR_CSV...

A support folder holds ``name.wav`` files with ``name.txt`` transcripts
beside them; a CSV is SpeechBrain's (``ID, duration, wav, ..., wrd``;
``$data_root`` is the CSV's folder). A folder with no ``.txt`` at all (or
a CSV without ``wrd``) is untranscribed audio: the model adapts without
transcripts (``speechbrain_meta.unsupervised``) and says so;
``--unsupervised`` does the same with transcripts present.
``speechbrain-meta-transcribe --adapt-each`` adapts to each file alone,
without transcript, before transcribing it, and starts from the base model
again for the next. ``speechbrain-meta-transcribe`` prints
one line per audio file on stdout, the path as given, a tab, the
transcript; everything else (progress, notes, errors) goes to stderr. Bad
input stops the command with a one-line message naming the file (and the
CSV line) and exit status 1.

Authors
 * speechbrain-meta developers 2026
"""

import argparse
import csv
import math
import os
import shutil
import sys
import tempfile

import yaml
from tqdm import tqdm

from speechbrain_meta.data.checks import BadInput

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def _model(folder, device, task_params=None):
    """Loads an exported or hub-format model, or says why it cannot."""
    from speechbrain_meta.hub import is_hub_model
    from speechbrain_meta.inference import AdaptiveASR, is_exported_model

    if not (is_exported_model(folder) or is_hub_model(folder)):
        raise BadInput(
            "neither a model exported by speechbrain-meta (hyperparams.yaml "
            "with speechbrain_meta_export) nor a SpeechBrain ASR model in the "
            "hub format (hyperparams.yaml with modules, pretrainer, tokenizer)",
            folder,
        )
    savedir = tempfile.mkdtemp(prefix="speechbrain-meta-")
    try:
        return AdaptiveASR.from_hparams(
            source=os.path.abspath(folder),
            savedir=savedir,
            run_opts={"device": device},
            task_params=task_params,
        )
    except ValueError as err:  # task parameters that do not fit the model
        raise BadInput(str(err), folder) from None
    finally:
        shutil.rmtree(savedir, ignore_errors=True)


def _adaptation_settings(args):
    """The adaptation settings the command line changes (None: none)."""
    settings = {}
    if args.adaptation is not None:
        with open(args.adaptation, encoding="utf-8") as fin:
            settings = yaml.safe_load(fin) or {}
        if not isinstance(settings, dict):
            raise BadInput(
                "expected a mapping of adaptation settings", args.adaptation
            )
    if args.rule is not None:
        settings["rule"] = args.rule
    if args.lr is not None:
        settings["lr"] = args.lr
    return settings or None


def read_support(source):
    """The support utterances of a folder or a CSV, with where each comes from.

    Arguments
    ---------
    source : str
        A folder of ``name.wav`` + ``name.txt``, or a SpeechBrain CSV.

    Returns
    -------
    list of tuple
        ``(audio path, transcript, where)``; ``where`` names the file and
        line for messages (None: the audio file). The transcripts are all
        None for untranscribed audio (a folder without any ``.txt``, a CSV
        without ``wrd``); a folder where only some audio has one is
        refused.
    """
    if os.path.isdir(source):
        audio = [
            name
            for name in sorted(os.listdir(source))
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS
        ]
        texts = {
            name: os.path.join(source, os.path.splitext(name)[0] + ".txt")
            for name in audio
        }
        have = [name for name in audio if os.path.isfile(texts[name])]
        if not have:  # untranscribed audio
            return [(os.path.join(source, n), None, None) for n in audio]
        items = []
        for name in audio:
            path = os.path.join(source, name)
            if not os.path.isfile(texts[name]):
                stem = os.path.splitext(name)[0]
                raise BadInput(
                    f"no transcript {stem}.txt beside it (others have one: "
                    "give every file one, or none to adapt without "
                    "transcripts)",
                    path,
                )
            with open(texts[name], encoding="utf-8") as fin:
                # Errors name the audio file (its transcript beside it).
                items.append((path, fin.read().strip(), None))
        return items
    return _read_csv(source, need_text=False)


def _read_csv(path, need_text):
    if not os.path.isfile(path):
        raise BadInput("no such file or folder", path)
    root = os.path.dirname(os.path.abspath(path))
    items = []
    with open(path, newline="", encoding="utf-8") as fin:
        reader = csv.DictReader(fin, skipinitialspace=True)
        columns = reader.fieldnames or []
        missing = [c for c in ("wav", "wrd") if c not in columns]
        if not need_text:
            missing = [c for c in missing if c == "wav"]
        if missing:
            raise BadInput(f"missing columns {missing} (has {columns})", path)
        for row in reader:
            audio = row["wav"].replace("$data_root", root)
            if not os.path.isabs(audio):
                audio = os.path.join(root, audio)
            items.append((audio, row.get("wrd"), f"{path}:{reader.line_num}"))
    return items


def adapt_main(argv=None):
    """``speechbrain-meta-adapt``: adapt to a support set, save the state.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments.

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="speechbrain-meta-adapt",
        description="Adapts an exported speechbrain-meta model to a new "
        "speaker, accent or language from a few utterances, transcribed or "
        "not, and saves what adaptation changed (a task state).",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="exported model folder, or a SpeechBrain EncoderASR / "
        "EncoderDecoderASR folder in the hub format",
    )
    parser.add_argument(
        "--support",
        required=True,
        help="folder of name.wav + name.txt, or a SpeechBrain CSV (wav, "
        "wrd); without any transcript (no .txt, no wrd column) the model "
        "adapts from the audio alone",
    )
    parser.add_argument(
        "--unsupervised",
        action="store_true",
        help="adapt from the audio alone even where transcripts are given",
    )
    parser.add_argument("--out", required=True, help="task state file to write")
    parser.add_argument(
        "--task-params",
        choices=["lhuc", "lora"],
        default=None,
        help="a hub model only: insert these task parameters and adapt only "
        "them, so the task state stays small (a meta-transferred folder has "
        "its own)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="adaptation steps (default: the model's)",
    )
    parser.add_argument(
        "--rule",
        choices=["own", "sgd", "adam"],
        default=None,
        help="update rule (default: the model's; adam for a hub model)",
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="the rule's learning rate"
    )
    parser.add_argument(
        "--adaptation",
        default=None,
        help="a yaml file of adaptation settings (rule, lr, steps, mode, "
        "l2sp, max_update, folds, criterion), over the model's",
    )
    parser.add_argument(
        "--eval-split",
        type=float,
        default=0.0,
        help="share of the support held out to print CER/WER before and "
        "after adaptation (default 0: none)",
    )
    parser.add_argument(
        "--no-safe",
        action="store_true",
        help="adapt for every step on every utterance (default: the steps "
        "are chosen by cross-validation over the support, and the model "
        "stays unadapted when the folds do not agree that adapting helps)",
    )
    parser.add_argument(
        "--drop-unknown",
        action="store_true",
        help="drop transcript characters outside the model's labels "
        "(default: refuse them)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda:0, ...")
    args = parser.parse_args(argv)
    try:
        return _adapt(args)
    except BadInput as err:
        print(f"speechbrain-meta-adapt: {err}", file=sys.stderr)
        return 1


def _adapt(args):
    items = read_support(args.support)
    if not items:
        raise BadInput("empty support set: no utterance found", args.support)
    n_eval = (
        int(math.ceil(args.eval_split * len(items)))
        if args.eval_split > 0
        else 0
    )
    if args.eval_split and (n_eval < 1 or len(items) - n_eval < 1):
        raise BadInput(
            f"{len(items)} utterances: too few for --eval-split "
            f"{args.eval_split} (one to evaluate and one to adapt at least)",
            args.support,
        )
    from speechbrain_meta.adaptation import Adaptation

    unsupervised = args.unsupervised or all(t is None for _, t, _ in items)
    if unsupervised and n_eval:
        raise BadInput(
            "--eval-split scores transcripts: this support has none "
            "(or --unsupervised)",
            args.support,
        )
    if any(t is None for _, t, _ in items) and not unsupervised:
        missing = next(w or a for a, t, w in items if t is None)
        raise BadInput("no transcript (wrd) on this row", missing)
    from speechbrain_meta.hub_transfer import read_meta_transfer

    asr = _model(args.model, args.device, args.task_params)
    which = "unsupervised_adaptation" if unsupervised else "adaptation"
    changes = _adaptation_settings(args)
    if changes is not None:
        try:
            setattr(
                asr,
                which,
                Adaptation.from_dict(
                    {**getattr(asr, which).describe(), **changes}
                ),
            )
        except (TypeError, ValueError) as err:
            raise BadInput(f"adaptation settings: {err}") from None
    if asr.hub_kind is not None:
        spec = asr.hparams.task_params
        inserted = (
            "never meta-trained"
            if spec is None
            else f"{spec['kind']} task parameters "
            + (
                "meta-trained for it"
                if read_meta_transfer(args.model) is not None
                else "inserted, only they adapt"
            )
        )
        print(
            f"model: SpeechBrain {asr.hub_kind} model (hub format, "
            f"{inserted}); adaptation: {getattr(asr, which).describe()}"
        )
    if unsupervised:
        print(
            "no transcripts: adapting from the audio alone (unsupervised: "
            f"{getattr(asr, which).describe()})"
        )
    notes = []
    support = []
    for audio, text, where in tqdm(items, desc="reading", file=sys.stderr):
        try:
            if unsupervised:
                support.append(asr.audio(audio, audio, notes))
            else:
                support.append(
                    asr.utterance(audio, text, audio, args.drop_unknown, notes)
                )
        except BadInput as err:
            if where is None:
                raise
            raise BadInput(err.reason, where) from None
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    held = support[len(support) - n_eval :] if n_eval else []
    train = support[: len(support) - n_eval]
    default_steps = getattr(asr, which).steps
    steps = default_steps if args.steps is None else args.steps
    with tqdm(total=steps, desc="adapting", file=sys.stderr) as bar:
        state = asr.adapt(
            [u["sig"] for u in train],
            None if unsupervised else [u["wrd"] for u in train],
            steps=args.steps,
            safe=not args.no_safe,
            progress=lambda done: bar.update(done - bar.n),
            unsupervised=unsupervised,
        )
    if held:
        for name, task_state in (("before", None), ("after", state)):
            cer, wer = asr.error_rates(held, task_state)
            print(
                f"held-out ({len(held)} utterances) {name} adaptation: "
                f"CER {100 * cer:.1f} %, WER {100 * wer:.1f} %"
            )
    print(f"adaptation: {state.info['why']}")
    size = state.save(args.out)
    print(
        f"{args.out}: {len(state.weights)} adapted tensors, {size} bytes, "
        f"{state.info['steps_kept']} steps kept of {steps}"
    )
    return 0


def transcribe_main(argv=None):
    """``speechbrain-meta-transcribe``: transcribe files, adapted or not.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments.

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="speechbrain-meta-transcribe",
        description="Transcribes audio files with an exported "
        "speechbrain-meta model, with a task state from "
        "speechbrain-meta-adapt or without. Prints one line per file: the "
        "path as given, a tab, the transcript.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="exported model folder, or a SpeechBrain hub-format ASR folder",
    )
    parser.add_argument(
        "--task-state", default=None, help="a speechbrain-meta-adapt state"
    )
    parser.add_argument(
        "--adapt-each",
        action="store_true",
        help="adapt to each file alone, without transcript, before "
        "transcribing it (the base model again for the next file; the "
        "unadapted transcript is kept when the adapted one collapses)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda:0, ...")
    parser.add_argument(
        "inputs",
        nargs="+",
        help="audio files, or SpeechBrain CSVs (wav column)",
    )
    args = parser.parse_args(argv)
    try:
        return _transcribe(args)
    except BadInput as err:
        print(f"speechbrain-meta-transcribe: {err}", file=sys.stderr)
        return 1


def _transcribe(args):
    from speechbrain_meta.inference import TaskState

    files = []
    for item in args.inputs:
        if item.lower().endswith(".csv"):
            files += [
                (audio, where) for audio, _, where in _read_csv(item, False)
            ]
        else:
            files.append((item, item))
    if args.adapt_each and args.task_state is not None:
        raise BadInput("--adapt-each and --task-state exclude each other")
    state = None
    if args.task_state is not None:
        state = TaskState.load(args.task_state)
    # A state of a hub model with task parameters needs them inserted.
    task_params = None if state is None else state.info.get("task_params")
    asr = _model(args.model, args.device, task_params)
    if state is not None:
        asr.check_task_state(state, args.task_state)
    if args.adapt_each:
        print(
            "adapting to each file alone, without transcript: "
            f"{asr.unsupervised_adaptation.describe()}",
            file=sys.stderr,
        )
    for audio, where in tqdm(files, desc="transcribing", file=sys.stderr):
        notes = []
        try:
            if args.adapt_each:
                text, info = asr.transcribe_adapting(audio, notes=notes)
                if not info["kept"]:
                    notes.append(
                        f"{audio}: the adapted transcript collapsed "
                        f"({info['adapted']!r}): the unadapted one is kept"
                    )
            else:
                text = asr.transcribe_file(audio, task_state=state, notes=notes)
        except BadInput as err:
            raise BadInput(err.reason, where) from None
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"{audio}\t{text}", flush=True)
    return 0


def _console(main):
    """Runs a main and exits with its status (console-script entry)."""
    sys.exit(main())


def adapt():
    """Console entry point of ``speechbrain-meta-adapt``."""
    _console(adapt_main)


def transcribe():
    """Console entry point of ``speechbrain-meta-transcribe``."""
    _console(transcribe_main)


if __name__ == "__main__":
    command = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if command not in ("adapt", "transcribe"):
        sys.exit("usage: python -m speechbrain_meta.cli {adapt,transcribe} ...")
    (adapt if command == "adapt" else transcribe)()
