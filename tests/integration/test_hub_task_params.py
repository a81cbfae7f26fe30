"""Task parameters in SpeechBrain hub models, and their meta-transfer.

On the tiny hub-format models of ``test_hub_models`` (a CTC ``EncoderASR``
and an attention ``EncoderDecoderASR``, loaded by SpeechBrain's own code):
LHUC or LoRA inserted into the model adapt alone and make a small task
state; meta-transfer learns their start on speakers of the training set
with the backbone frozen and writes a folder that SpeechBrain still loads
as the model it was and that ``AdaptiveASR`` adapts from the learned start.
"""

import os
import subprocess
import sys

import pytest
import test_hub_models as hub_models
import torch
from speechbrain.inference.ASR import EncoderASR
from test_hub_models import ROOT, _batch, _speaker, readme_block

from speechbrain_meta.hub_transfer import (
    TASK_PARAMS_ADAPTATION,
    TASK_PARAMS_FILE,
    meta_transfer_hub,
    read_meta_transfer,
    search_inner_loop,
)
from speechbrain_meta.inference import AdaptiveASR, TaskState

CPU = {"device": "cpu"}
# The tiny hub models (module-scoped fixtures of test_hub_models).
tones = hub_models.tones
ctc_folder = hub_models.ctc_folder
seq2seq_folder = hub_models.seq2seq_folder


@pytest.mark.parametrize("kind,params", [("ctc", "lhuc"), ("seq2seq", "lora")])
def test_hub_model_with_task_params_adapts_only_them(
    kind, params, tones, tmp_path, request
):
    folder = str(request.getfixturevalue(f"{kind}_folder"))
    plain = AdaptiveASR.from_hparams(
        source=folder, savedir=str(tmp_path / "plain"), run_opts=CPU
    )
    asr = AdaptiveASR.from_hparams(
        source=folder,
        savedir=str(tmp_path / "ours"),
        run_opts=CPU,
        task_params=params,
    )
    assert asr.adaptation.describe()["lr"] == TASK_PARAMS_ADAPTATION["lr"]
    utts = _speaker(tones)
    wavs, lens = _batch(utts[:6])
    # Inserted at the identity: the same transcripts as the plain model.
    assert asr.transcribe_batch(wavs, lens) == plain.transcribe_batch(
        wavs, lens
    )
    support = utts[:8]
    state = asr.adapt(
        [w for w, _ in support], [t for _, t in support], safe=False
    )
    marker = "task_lhuc" if params == "lhuc" else "adapter_"
    assert state.weights and all(marker in n for n in state.weights)
    size = sum(w.numel() for w in state.weights.values())
    backbone = sum(p.numel() for p in plain.mods.parameters())
    assert size < 0.2 * backbone
    assert state.info["task_params"]["kind"] == params
    fitted = [asr.utterance(w, t) for w, t in support]
    assert asr.loss(fitted, state) < asr.loss(fitted)
    # Loaded again (LoRA's random start is seeded), the state fits.
    again = AdaptiveASR.from_hparams(
        source=folder,
        savedir=str(tmp_path / "again"),
        run_opts=CPU,
        task_params=params,
    )
    assert again.model_fingerprint == asr.model_fingerprint
    path = tmp_path / "spk.pt"
    state.save(path)
    loaded = TaskState.load(path)
    assert again.transcribe_batch(wavs, lens, loaded) == asr.transcribe_batch(
        wavs, lens, state
    )
    with pytest.raises(ValueError, match="not one of"):
        AdaptiveASR.from_hparams(
            source=folder, savedir=str(tmp_path / "x"), task_params="bitfit"
        )


SHORT_RUN = {
    "number_of_epochs": 2,
    "train_dataloader_opts": {"episodes": {"episodes_per_epoch": 4}},
    "valid_dataloader_opts": {"episodes": {"episodes_per_epoch": 2}},
}


def test_meta_transfer_of_a_hub_model(ctc_folder, tones, tmp_path):
    data_folder, _ = tones
    run = tmp_path / "run"
    out = meta_transfer_hub(
        str(ctc_folder),
        str(data_folder / "train.csv"),
        str(data_folder / "dev.csv"),
        str(run),
        overrides=SHORT_RUN,
    )
    # Still the pretrained model for SpeechBrain's own interface.
    utts = _speaker(tones)
    wavs, lens = _batch(utts[:6])
    original = EncoderASR.from_hparams(
        source=str(ctc_folder), savedir=str(tmp_path / "a")
    )
    written = EncoderASR.from_hparams(source=out, savedir=str(tmp_path / "b"))
    assert (
        written.transcribe_batch(wavs, lens)[0]
        == original.transcribe_batch(wavs, lens)[0]
    )
    # AdaptiveASR: LHUC inserted, started where meta-training left it.
    asr = AdaptiveASR.from_hparams(
        source=out, savedir=str(tmp_path / "c"), run_opts=CPU
    )
    assert asr.hparams.task_params["kind"] == "lhuc"
    learned = torch.load(os.path.join(out, TASK_PARAMS_FILE))
    assert learned and all("task_lhuc" in n for n in learned)
    assert any(t.abs().max() > 0 for t in learned.values())  # it moved
    params = dict(asr.mods.named_parameters())
    assert all(torch.equal(params[n], t) for n, t in learned.items())
    assert asr.adaptation.describe()["rule"] == "sgd"
    assert asr.adaptation.describe()["lr"] == 0.1
    assert "CER" in (run / "train_log.txt").read_text()
    state = asr.adapt(
        [w for w, _ in utts[:8]], [t for _, t in utts[:8]], safe=False
    )
    assert state.weights and all("task_lhuc" in n for n in state.weights)
    # A second run in the same folder resumes the finished one (the epoch
    # counter is checkpointed): the same task parameters, no training.
    log = (run / "train_log.txt").read_text()
    again = meta_transfer_hub(
        str(ctc_folder),
        str(data_folder / "train.csv"),
        str(data_folder / "dev.csv"),
        str(run),
        overrides=SHORT_RUN,
    )
    relearned = torch.load(os.path.join(again, TASK_PARAMS_FILE))
    assert all(torch.equal(relearned[n], learned[n]) for n in learned)
    assert (run / "train_log.txt").read_text() == log
    # The command line adapts and transcribes it (the state names the
    # task parameters its model needs).
    support = tmp_path / "support"
    support.mkdir()
    import soundfile as sf

    for i, (wav, text) in enumerate(utts[:6]):
        audio, rate = sf.read(wav)
        sf.write(support / f"u{i}.wav", audio, rate)
        (support / f"u{i}.txt").write_text(text)
    env = {**os.environ, "PYTHONPATH": ROOT}
    state_file = tmp_path / "spk.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "speechbrain_meta.cli", "adapt", "--model",
         out, "--support", str(support), "--out", str(state_file),
         "--no-safe"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "lhuc task parameters meta-trained for it" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "speechbrain_meta.cli", "transcribe",
         "--model", out, "--task-state", str(state_file),
         str(support / "u0.wav")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()


def test_inner_loop_search_keeps_the_best_on_validation(
    ctc_folder, tones, tmp_path
):
    """Each inner loop meta-transfers into its own folder; the one of
    lowest validation CER is returned, its adaptation is its inner loop,
    and the table says which; a setting the file lacks is refused."""
    import json

    data_folder, _ = tones
    candidates = [
        {"inner_steps": 1, "inner_lr": 0.1},
        {"inner_steps": 2, "inner_lr": 1.0},
    ]
    folder, rows = search_inner_loop(
        str(ctc_folder),
        str(data_folder / "train.csv"),
        str(data_folder / "dev.csv"),
        str(tmp_path / "search"),
        candidates,
        overrides=SHORT_RUN,
    )
    assert [r["settings"] for r in rows] == candidates
    assert [r["candidate"] for r in rows] == [
        "inner_lr0.1_inner_steps1",
        "inner_lr1.0_inner_steps2",
    ]
    assert len({r["folder"] for r in rows}) == 2
    best = min(rows, key=lambda r: r["CER"])
    assert [r["chosen"] for r in rows] == [r is best for r in rows]
    assert folder == best["folder"]
    for row in rows:  # each folder adapts as it was meta-trained
        written = read_meta_transfer(row["folder"])
        assert written["adaptation"]["steps"] == row["settings"]["inner_steps"]
        assert written["adaptation"]["lr"] == row["settings"]["inner_lr"]
        assert written["info"]["kept"]["CER"] == row["CER"]
    saved = json.loads((tmp_path / "search/inner_loop_search.json").read_text())
    assert [r["CER"] for r in saved] == [r["CER"] for r in rows]
    table = (tmp_path / "search/inner_loop_search.md").read_text()
    assert f"| {best['candidate']} | {best['CER']:.2f} |" in table
    with pytest.raises(ValueError, match="inner_rate"):
        search_inner_loop(
            str(ctc_folder),
            "train.csv",
            "dev.csv",
            str(tmp_path / "bad"),
            [{"inner_rate": 0.1}],
        )


@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_meta_transfer_gradient_of_a_hub_model(
    algorithm, ctc_folder, tones, tmp_path
):
    """The meta-gradient of the LHUC start of a hub CTC model (the CRDNN's
    LSTM included), through ``MetaBrain.fit_batch`` of the Brain
    ``meta_transfer_hub`` trains, in float64, against central finite
    differences: of the outer objective (second-order MAML) or of the
    query loss at the support-adapted weights with the inner updates held
    (first order)."""
    from speechbrain.dataio.batch import PaddedBatch
    from speechbrain.nnet.activations import Softmax
    from test_fit_batch_gradients import (
        ACCUMULATE,
        _check_against_fd,
        _check_first_order,
    )

    from speechbrain_meta import FOMAML, MAML, InnerLoop
    from speechbrain_meta.brains import MetaTransferBrain, meta_brain_class
    from speechbrain_meta.data import Episode
    from speechbrain_meta.hub import hub_brain_hparams, load_hub_model
    from speechbrain_meta.hub_transfer import hub_dataset, insert_task_params

    interface = load_hub_model(str(ctc_folder), str(tmp_path / "pre"))
    modules = dict(interface.mods.items())
    patterns = insert_task_params(modules, "lhuc")
    torch.set_default_dtype(torch.float64)
    try:
        for module in modules.values():
            module.double()
            for part in module.modules():  # SpeechBrain's Softmax pins
                if isinstance(part, Softmax):  # its output to float32
                    part.dtype = torch.float64
        brain_class, hparams = hub_brain_hparams(interface)
        kind = MAML if algorithm == "maml" else FOMAML
        brain = meta_brain_class(brain_class, MetaTransferBrain)(
            modules=modules,
            opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
            hparams={
                **hparams,
                "grad_accumulation_factor": ACCUMULATE,
                "adapt_in_train_mode": False,
            },
            run_opts=CPU,
            meta_algorithm=kind(
                InnerLoop(2, inner_lr=0.5, adapt_params=patterns)
            ),
            task_params=patterns,
        )
        brain.init_optimizers()
        data_folder, _ = tones
        items = list(hub_dataset(str(data_folder / "train.csv"), brain, 16000))
        speaker = [i for i in items if i["spk_id"] == items[0]["spk_id"]]
        episode = Episode(PaddedBatch(speaker[:3]), PaddedBatch(speaker[3:6]))
        tensors = list(brain.meta_parameters(brain.inner_loop).values())
        assert len(tensors) == 4  # conv, LSTM-free DNN and head layers
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # away from the identity, the same each run
            for t in tensors:
                t.copy_(0.3 * torch.randn(t.shape, generator=gen))
        # Small steps: the CNN's max pooling and the leaky ReLUs have
        # kinks a wider central difference may straddle (where one falls
        # within 1e-6 depends on the tiny model's training, which depends
        # on the thread count: the smaller step then clears it).
        if algorithm == "maml":
            _check_against_fd(brain, episode, tensors, eps=(1e-6, 1e-7))
        else:
            _check_first_order(brain, episode, tensors, eps=1e-6)
    finally:
        torch.set_default_dtype(torch.float32)


def test_readme_hub_task_params_block(ctc_folder, tones, tmp_path, monkeypatch):
    """README.md's task-parameter and meta-transfer block, as written (a
    shorter run), on the tiny CTC model."""
    monkeypatch.chdir(tmp_path)
    os.symlink(ctc_folder, tmp_path / "my_hub_model")
    data_folder, _ = tones
    for name in ("train.csv", "dev.csv"):
        os.symlink(data_folder / name, tmp_path / name)
    text = readme_block("meta_transfer_hub(")
    written = 'overrides={"number_of_epochs": 5}'
    assert written in text
    text = text.replace(written, f"overrides={SHORT_RUN!r}")
    utts = _speaker(tones)
    namespace = {
        "support_wavs": [w for w, _ in utts[:8]],
        "support_texts": [t for _, t in utts[:8]],
    }
    exec(text, namespace)
    assert namespace["folder"].endswith(
        os.path.join("hub_meta_lhuc", "inference")
    )
    assert namespace["asr"].hparams.task_params["kind"] == "lhuc"
    assert all("task_lhuc" in n for n in namespace["state"].weights)


def test_meta_transfer_of_an_attention_hub_model(
    seq2seq_folder, tones, tmp_path
):
    """LoRA in an EncoderDecoderASR (encoder, attention decoder and the
    beam search's CTC head), meta-trained on its joint loss."""
    from speechbrain.inference.ASR import EncoderDecoderASR

    data_folder, _ = tones
    out = meta_transfer_hub(
        str(seq2seq_folder),
        str(data_folder / "train.csv"),
        str(data_folder / "dev.csv"),
        str(tmp_path / "run"),
        overrides={**SHORT_RUN, "task_params": {"kind": "lora", "rank": 2}},
    )
    utts = _speaker(tones)
    wavs, lens = _batch(utts[:4])
    original = EncoderDecoderASR.from_hparams(
        source=str(seq2seq_folder), savedir=str(tmp_path / "a")
    )
    written = EncoderDecoderASR.from_hparams(
        source=out, savedir=str(tmp_path / "b")
    )
    assert (
        written.transcribe_batch(wavs, lens)[0]
        == original.transcribe_batch(wavs, lens)[0]
    )
    asr = AdaptiveASR.from_hparams(
        source=out, savedir=str(tmp_path / "c"), run_opts=CPU
    )
    assert asr.hparams.task_params == {
        "kind": "lora", "modules": None, "rank": 2, "alpha": 8
    }  # fmt: skip
    learned = torch.load(os.path.join(out, TASK_PARAMS_FILE))
    parts = {name.split(".")[0] for name in learned}
    assert parts == {"encoder", "decoder"}  # the decoder's layers too
    state = asr.adapt(
        [w for w, _ in utts[:8]], [t for _, t in utts[:8]], safe=False
    )
    assert state.weights and all("adapter_" in n for n in state.weights)
