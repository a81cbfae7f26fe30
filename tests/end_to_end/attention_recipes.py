"""What the tests of the SynthDigits attention recipes (``meta_seq2seq``,
``meta_transformer``) share: the recipe on the quick main job's corpus with
debug flags, one method's run, the beam search's hypotheses under a fast
output bias, and the check that a run written in the hub format is the
model the recipe trained (SpeechBrain's ``EncoderDecoderASR`` loads the
folder as it is and transcribes as the recipe's own beam search does,
``AdaptiveASR`` loads and adapts it).
"""

import os
import runpy

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.inference.ASR import EncoderDecoderASR

from speechbrain_meta.inference import AdaptiveASR
from speechbrain_meta.layered_yaml import load_layered_hparams
from speechbrain_meta.recipe import recover_selected

DEBUG = [
    "--joint_epochs=2",
    "--warm_start_epoch=1",
    "--episodes_per_epoch=4",
    "--valid_dataloader_opts={episodes: {episodes_per_epoch: 2}}",
    "--few_shot={k_shots: [0, 1, 5], episodes_per_task: 1, "
    "query_utterances: 6}",
    "--adaptation_search={rules: [own], modes: [eval], steps: [1], "
    "query_utterances: 4}",
    "--few_shot_voice_tasks=1",
    "--beam_size=2",
    "--noprogressbar",
]


def attention_recipe(quick_benchmark, folder, out, model_flags=()):
    """The recipe's module, its debug flags on the quick job's corpus, the
    output folder and the corpus folder.

    Arguments
    ---------
    quick_benchmark : tuple
        The ``quick_benchmark`` fixture.
    folder : str
        The recipe's folder.
    out : pathlib.Path
        Where its runs go.
    model_flags : sequence of str
        More flags (a smaller model).

    Returns
    -------
    tuple
        ``(module, flags, out, data folder)``.
    """
    bench_module, bench, _ = quick_benchmark
    quick = bench_module["QUICK"]
    flags = (
        DEBUG
        + list(model_flags)
        + [
            f"--data_folder={bench / 'data'}",
            f"--corpus={quick['corpus']}",
            f"--real_speech={quick['real_speech']}",
        ]
    )
    module = runpy.run_path(os.path.join(folder, "train.py"))
    module["FOLDER"] = folder
    return module, flags, out, bench / "data"


def hparams_file(recipe, method):
    """The method's hparams file in the recipe."""
    return os.path.join(recipe[0]["FOLDER"], "hparams", f"{method}.yaml")


def run_method(recipe, method, *extra, name=None):
    """Runs one method of the recipe (joint models in ``out/joint``).

    Arguments
    ---------
    recipe : tuple
        From ``attention_recipe``.
    method : str
        The method's file name.
    *extra : str
        More flags.
    name : str, optional
        The run's folder under ``out`` (default: the method).

    Returns
    -------
    dict
        The run's few-shot results.
    """
    module, flags, out, _ = recipe
    return module["main"](
        [hparams_file(recipe, method)]
        + flags
        + [
            f"--joint_folder={out / 'joint'}",
            f"--output_folder={out / (name or method)}",
            *extra,
        ]
    )


def fomaml_brain(recipe, overrides=None):
    """The recipe's trained FOMAML brain (its selected checkpoint), in eval
    mode, its label encoder and test set.

    Arguments
    ---------
    recipe : tuple
        From ``attention_recipe``, with ``fomaml`` run.
    overrides : dict, optional
        More hparams overrides (the debug model's sizes).

    Returns
    -------
    tuple
        ``(brain, label encoder, test set, hparams)``.
    """
    module, _, out, data = recipe
    overrides = {
        "data_folder": str(data),
        "output_folder": str(out / "fomaml"),
        "joint_folder": str(out / "joint"),
        **(overrides or {}),
    }
    hparams, _ = load_layered_hparams(
        hparams_file(recipe, "fomaml"), module["COMMON"], overrides
    )
    datasets, tokenizer, _ = module["dataio_prepare"](hparams)
    assert recover_selected(hparams) is not None
    brain = module["make_brain"](hparams, {"device": "cpu"}, tokenizer)
    brain.modules.eval()
    return brain, tokenizer, datasets["test"], hparams


def hyps_with_fast_bias(brain, tokenizer, batch, shift):
    """The beam search's hypotheses (labels) with ``shift`` added to the
    output layer's bias as fast weights (``call_with``, at TEST); asserts
    the meta-parameters are unchanged after."""
    bias_name = "seq_lin.w.bias"
    bias = dict(brain.modules.named_parameters())[bias_name]
    before = bias.detach().clone()
    fast = {bias_name: bias.detach() + shift}
    with torch.no_grad():
        out = brain.call_with(fast, brain.compute_forward, batch, sb.Stage.TEST)
    assert torch.equal(bias.detach(), before)
    return [tokenizer.decode_ndim(h) for h in out[3]]


def check_hub_folder(recipe, overrides, savedir):
    """Asserts FOMAML's hub folder transcribes as the recipe's Brain.

    Arguments
    ---------
    recipe : tuple
        From ``attention_recipe``, with ``fomaml`` run.
    overrides : dict
        The run's model overrides (beam size, the debug model's sizes).
    savedir : pathlib.Path
        Where the interfaces put what they load.

    Returns
    -------
    list of str
        The hypotheses (three test utterances).
    """
    hub_folder = recipe[2] / "fomaml" / "hub"
    brain, tokenizer, test, _ = fomaml_brain(recipe, overrides)
    rows = [test[i] for i in range(3)]
    expected = []
    for row in rows:
        with torch.no_grad():
            out = brain.compute_forward(PaddedBatch([row]), sb.Stage.TEST)
        expected.append("".join(tokenizer.decode_ndim(out[3][0])))

    asr = EncoderDecoderASR.from_hparams(
        source=str(hub_folder), savedir=str(savedir / "sb")
    )
    one = torch.ones(1)
    got = [asr.transcribe_batch(r["sig"][None], one)[0][0] for r in rows]
    assert got == expected

    adaptive = AdaptiveASR.from_hparams(
        source=str(hub_folder),
        savedir=str(savedir / "adaptive"),
        run_opts={"device": "cpu"},
    )
    assert adaptive.hub_kind == "EncoderDecoderASR"
    words = [adaptive.transcribe_batch(r["sig"][None], one)[0][0] for r in rows]
    assert words == expected
    state = adaptive.adapt(
        [r["sig"] for r in rows], [r["wrd"] for r in rows], safe=False
    )
    assert state.info["steps_kept"] > 0 and state.weights
    return got
