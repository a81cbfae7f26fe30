"""AdaptiveASR and the two commands, on models the quick main job exported."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_meta.inference import AdaptiveASR, TaskState

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _model_dir(quick_benchmark, method):
    _, out, _ = quick_benchmark
    return str(out / "seed1234" / method / "inference")


def _load(quick_benchmark, method, tmp_path):
    return AdaptiveASR.from_hparams(
        source=_model_dir(quick_benchmark, method),
        savedir=str(tmp_path / f"saved_{method}"),
        run_opts={"device": "cpu"},
    )


def _voice(quick_benchmark, index=0):
    """The utterances of one held-out voice: (wav path, transcript)."""
    _, out, _ = quick_benchmark
    with open(out / "data" / "test_voices.csv") as f:
        rows = list(csv.DictReader(f))
    voice = sorted({r["spk_id"] for r in rows})[index]
    return [
        (r["wav"].replace("$data_root", str(out / "data")), r["wrd"])
        for r in rows
        if r["spk_id"] == voice
    ]


def _state_dict(asr):
    return {k: v.clone() for k, v in asr.mods.state_dict().items()}


@pytest.mark.parametrize("method", ["fomaml", "metasgd", "lhuc"])
def test_adapting_to_a_new_voice_lowers_its_error(
    quick_benchmark, method, tmp_path
):
    asr = _load(quick_benchmark, method, tmp_path)
    utts = _voice(quick_benchmark)
    support, query = utts[:10], utts[10:]
    before = _state_dict(asr)
    state = asr.adapt(
        [w for w, _ in support], [t for _, t in support], steps=8, safe=False
    )
    # The base model is bit-identical after adaptation.
    after = asr.mods.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    checked = [asr.utterance(w, t) for w, t in query]
    assert asr.loss(checked, state) < asr.loss(checked)
    assert state.info["utterances"] == 10
    assert not state.info["abstained"] and state.info["steps_kept"] == 8
    # Validated by default: one utterance is too few to validate on, so
    # the model abstains, says why, and the state changes nothing.
    alone = asr.adapt([support[0][0]], [support[0][1]])
    assert alone.info["abstained"] and "at least 2" in alone.info["why"]
    assert alone.weights == {}
    names = {n for n, p in asr.mods.named_parameters() if p.requires_grad}
    if method == "lhuc":
        assert all("task_" in n for n in names)
        assert sum(w.numel() for w in state.weights.values()) < 1000


def test_task_states_are_independent_and_round_trip(quick_benchmark, tmp_path):
    asr = _load(quick_benchmark, "fomaml", tmp_path)
    a_utts, b_utts = _voice(quick_benchmark, 0), _voice(quick_benchmark, 1)
    state_a = asr.adapt(
        [w for w, _ in a_utts[:5]],
        [t for _, t in a_utts[:5]],
        steps=3,
        safe=False,
    )
    state_b = asr.adapt(
        [w for w, _ in b_utts[:5]],
        [t for _, t in b_utts[:5]],
        steps=3,
        safe=False,
    )
    wav = torch.from_numpy(
        sf.read(a_utts[-1][0], dtype="float32")[0]
    ).unsqueeze(0)
    lens = torch.ones(1)
    alone_a = asr.encode_batch(wav, lens, state_a)
    alone_b = asr.encode_batch(wav, lens, state_b)
    base = asr.encode_batch(wav, lens)
    assert not torch.equal(alone_a, alone_b) and not torch.equal(alone_a, base)
    for _ in range(2):  # alternately
        assert torch.equal(asr.encode_batch(wav, lens, state_b), alone_b)
        assert torch.equal(asr.encode_batch(wav, lens, state_a), alone_a)
        assert torch.equal(asr.encode_batch(wav, lens), base)
    path = tmp_path / "a.pt"
    state_a.save(str(path))
    loaded = TaskState.load(str(path))
    assert torch.equal(asr.encode_batch(wav, lens, loaded), alone_a)
    # A state of another model is refused.
    other = _load(quick_benchmark, "lhuc", tmp_path)
    with pytest.raises(ValueError, match="another model"):
        other.transcribe_file(a_utts[-1][0], task_state=loaded)
    # transcribe_file and transcribe_batch agree.
    words, tokens = asr.transcribe_batch(wav, lens, state_a)
    assert asr.transcribe_file(a_utts[-1][0], task_state=state_a) == words[0]
    assert isinstance(tokens[0], list)


def _cli(command, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "speechbrain_meta.cli", command, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    return proc.returncode, proc.stdout, proc.stderr


def _support_folder(folder, utts):
    os.makedirs(folder, exist_ok=True)
    for i, (wav, text) in enumerate(utts):
        audio, rate = sf.read(wav, dtype="float32")
        sf.write(os.path.join(folder, f"u{i:02d}.wav"), audio, rate)
        with open(os.path.join(folder, f"u{i:02d}.txt"), "w") as f:
            f.write(text)
    return folder


def test_commands_end_to_end(quick_benchmark, tmp_path):
    model = _model_dir(quick_benchmark, "lhuc")
    utts = _voice(quick_benchmark)
    support = _support_folder(str(tmp_path / "support"), utts[:6])
    state = str(tmp_path / "spk.pt")
    code, out, err = _cli(
        "adapt", "--model", model, "--support", support, "--out", state,
        "--steps", "3", "--eval-split", "0.34",
    )  # fmt: skip
    assert code == 0, err
    assert "held-out (3 utterances) before adaptation: CER" in out
    assert "held-out (3 utterances) after adaptation: CER" in out
    # It says whether the folds validated an adaptation, and why.
    why = [line for line in out.splitlines() if line.startswith("adaptation:")]
    assert len(why) == 1
    assert "steps kept" in why[0] or "left unadapted" in why[0]
    assert "adapting" in err  # the progress bar, on stderr
    assert os.path.getsize(state) < 20_000
    files = [w for w, _ in utts[6:9]]
    code, out, err = _cli(
        "transcribe", "--model", model, "--task-state", state, *files
    )
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == files
    assert all(len(line.split("\t")) == 2 for line in lines)
    # A CSV works too, for both commands.
    csv_path = tmp_path / "support.csv"
    with open(csv_path, "w") as f:
        f.write("ID,duration,wav,wrd\n")
        for i, (wav, text) in enumerate(utts[:4]):
            f.write(f"u{i},1.0,{wav},{text}\n")
    code, out, err = _cli(
        "adapt",
        "--model",
        model,
        "--support",
        str(csv_path),
        "--out",
        state,
        "--steps",
        "2",
    )
    assert code == 0, err
    code, out, err = _cli("transcribe", "--model", model, str(csv_path))
    assert code == 0, err and len(out.splitlines()) == 4
    for command in ("adapt", "transcribe"):
        code, out, _ = _cli(command, "--help")
        assert code == 0 and "--model" in out and "--device" in out


def test_bad_input_is_named(quick_benchmark, tmp_path):
    model = _model_dir(quick_benchmark, "joint")
    utts = _voice(quick_benchmark)
    state = str(tmp_path / "s.pt")

    def adapt(folder, *extra):
        return _cli(
            "adapt",
            "--model",
            model,
            "--support",
            folder,
            "--out",
            state,
            "--steps",
            "1",
            *extra,
        )

    def bad_folder(name, text="1 2 3", audio=None, raw=None, subtype=None):
        folder = str(tmp_path / name)
        _support_folder(folder, utts[:2])
        path = os.path.join(folder, "zz.wav")
        if raw is not None:
            with open(path, "wb") as f:
                f.write(raw)
        else:
            if audio is None:
                audio = sf.read(utts[0][0], dtype="float32")[0]
            sf.write(path, audio, 16000, subtype=subtype)
        with open(os.path.join(folder, "zz.txt"), "w") as f:
            f.write(text)
        return folder, path

    cases = []
    empty = str(tmp_path / "empty")
    os.makedirs(empty)
    cases.append((adapt(empty), "empty support set"))
    one = _support_folder(str(tmp_path / "one"), utts[:1])
    cases.append(
        (adapt(one, "--eval-split", "0.5"), "too few for --eval-split")
    )
    folder, path = bad_folder("garbage", raw=b"not audio at all")
    cases.append((adapt(folder), f"{path}: unreadable audio"))
    folder, path = bad_folder("empty_audio", audio=np.zeros((0, 1)))
    cases.append((adapt(folder), f"{path}: empty audio"))
    audio, rate = sf.read(utts[0][0], dtype="float32")
    good = str(tmp_path / "full.wav")
    sf.write(good, audio, rate)
    data = open(good, "rb").read()
    folder, path = bad_folder(
        "truncated", raw=data[: len(data) // 2], text=utts[0][1]
    )
    cases.append((adapt(folder), f"{path}: truncated audio"))
    nan = np.full(16000, np.nan, dtype=np.float32)
    folder, path = bad_folder("nan", audio=nan, subtype="FLOAT")
    cases.append((adapt(folder), f"{path}: 16000 NaN or inf samples"))
    folder, path = bad_folder("unknown", text="1 2 x")
    cases.append((adapt(folder), "characters outside the model's labels: 'x'"))
    folder, path = bad_folder("short", audio=np.zeros(800), text="1 2 3 4 5")
    cases.append(
        (adapt(folder), f"{path}: audio too short for its transcript under CTC")
    )
    not_model = str(tmp_path / "not_a_model")
    os.makedirs(not_model)
    cases.append(
        (
            _cli("transcribe", "--model", not_model, utts[0][0]),
            "neither a model exported by speechbrain-meta",
        )
    )
    other = _model_dir(quick_benchmark, "fomaml")
    code, _, err = _cli(
        "adapt",
        "--model",
        other,
        "--support",
        one,
        "--out",
        state,
        "--steps",
        "1",
        "--no-safe",
    )
    assert code == 0, err
    cases.append(
        (
            _cli(
                "transcribe",
                "--model",
                model,
                "--task-state",
                state,
                utts[0][0],
            ),
            "task state of another model",
        )
    )
    cases.append(
        (
            _cli("transcribe", "--model", model, str(tmp_path / "missing.wav")),
            "missing.wav: missing audio file",
        )
    )
    for (code, out, err), message in cases:
        # Exit status 1, and the last line of stderr says it, naming the file.
        assert code == 1, (message, err)
        last = err.strip().splitlines()[-1]
        assert last.startswith("speechbrain-meta-") and message in last, (
            message,
            err,
        )
        assert "Traceback" not in err

    # Fixed automatically, and said so: another rate, stereo, unknown
    # characters with --drop-unknown.
    audio, rate = sf.read(utts[0][0], dtype="float32")
    fixed = str(tmp_path / "fixed")
    _support_folder(fixed, utts[1:3])
    sf.write(os.path.join(fixed, "a8k.wav"), audio[::2], 8000)
    with open(os.path.join(fixed, "a8k.txt"), "w") as f:
        f.write(utts[0][1] + " x")
    sf.write(
        os.path.join(fixed, "stereo.wav"), np.stack([audio, audio], 1), rate
    )
    with open(os.path.join(fixed, "stereo.txt"), "w") as f:
        f.write(utts[0][1])
    code, out, err = _cli(
        "adapt",
        "--model",
        model,
        "--support",
        fixed,
        "--out",
        state,
        "--steps",
        "1",
        "--drop-unknown",
    )
    assert code == 0, err
    assert "resampled from 8000 to 16000 Hz" in err
    assert "2 channels mixed down to 1" in err
    assert "dropped characters outside the labels: 'x'" in err


def test_an_export_written_as_a_speechbrain_encoder_asr(
    quick_benchmark, tmp_path
):
    """write_encoder_asr: SpeechBrain's own EncoderASR loads the folder and
    transcribes as the export does; AdaptiveASR takes it as a hub model
    with the same outputs."""
    from speechbrain.inference.ASR import EncoderASR

    from speechbrain_meta.hub import write_encoder_asr

    hub = write_encoder_asr(
        _model_dir(quick_benchmark, "joint"), str(tmp_path / "hub")
    )
    exported = _load(quick_benchmark, "joint", tmp_path)
    plain = EncoderASR.from_hparams(source=hub, savedir=str(tmp_path / "sb"))
    adaptive = AdaptiveASR.from_hparams(
        source=hub, savedir=str(tmp_path / "ours")
    )
    assert adaptive.hub_kind == "EncoderASR" and exported.hub_kind is None
    wavs = [
        torch.as_tensor(sf.read(w, dtype="float32")[0])
        for w, _ in _voice(quick_benchmark)[:3]
    ]
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    lens = torch.tensor([len(w) / batch.shape[1] for w in wavs])
    torch.testing.assert_close(
        adaptive.encode_batch(batch, lens), exported.encode_batch(batch, lens)
    )
    words, _ = exported.transcribe_batch(batch, lens)
    assert plain.transcribe_batch(batch, lens)[0] == words
    assert adaptive.transcribe_batch(batch, lens)[0] == words
