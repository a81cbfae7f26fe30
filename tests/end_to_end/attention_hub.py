"""The check that an attention recipe's run written in the hub format is the
model the recipe trained: SpeechBrain's ``EncoderDecoderASR`` loads the
folder as it is and transcribes as the recipe's own beam search does, and
``AdaptiveASR`` loads and adapts it.
"""

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.inference.ASR import EncoderDecoderASR

from speechbrain_meta.inference import AdaptiveASR
from speechbrain_meta.layered_yaml import load_layered_hparams
from speechbrain_meta.recipe import recover_selected


def check_hub_folder(module, method_file, overrides, hub_folder, savedir):
    """Asserts the hub folder transcribes as the recipe's Brain.

    Arguments
    ---------
    module : dict
        The recipe's train.py, run (``COMMON``, ``dataio_prepare``,
        ``make_brain``).
    method_file : str
        The method's hparams file.
    overrides : dict
        The run's overrides (its folders, the debug model).
    hub_folder : pathlib.Path
        The run's ``hub`` folder.
    savedir : pathlib.Path
        Where the interfaces put what they load.

    Returns
    -------
    list of str
        The hypotheses (three test utterances).
    """
    hparams, _ = load_layered_hparams(method_file, module["COMMON"], overrides)
    datasets, tokenizer, _ = module["dataio_prepare"](hparams)
    assert recover_selected(hparams) is not None
    brain = module["make_brain"](hparams, {"device": "cpu"}, tokenizer)
    brain.modules.eval()
    rows = [datasets["test"][i] for i in range(3)]
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
