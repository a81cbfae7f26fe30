"""AdaptiveASR: load a meta-trained model, adapt it from a few utterances.

A training recipe calls ``export_model`` at the end of training; it writes
a self-contained folder::

    inference/
        hyperparams.yaml      the modules, the label encoder, the decoding,
                              the adaptation (rule, rate, steps, mode,
                              anchoring, validation folds, which parameters
                              adapt), a Pretrainer
        normalize.ckpt encoder.ckpt ctc_lin.ckpt label_encoder.ckpt
        update_rule.ckpt      a learned update rule's state, if any

Copying the folder is enough to use the model elsewhere::

    asr = AdaptiveASR.from_hparams(source="inference", savedir="tmp")
    state = asr.adapt(["a.wav", "b.wav"], ["1 2 3", "4 5"])  # a TaskState
    asr.transcribe_file("c.wav", task_state=state)
    state.save("speaker_7.pt")

Adaptation runs the model's own meta-learned adaptation (through the same
``MetaBrain`` machinery as in training and in the few-shot protocol) on a
copy of the weights: the base model never changes, and several task
states can be used alternately. Validated adaptation (``Adaptation.folds``:
the steps are chosen by cross-validation over the support, or the model
abstains and stays unadapted) is on by default; the task state says which
happened and why.

Authors
 * speechbrain-meta developers 2026
"""

import contextlib
import copy
import datetime
import functools
import hashlib
import os

import ruamel.yaml
import speechbrain as sb
import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.nnet.adapters import AdaptedModel
from speechbrain.utils.checkpoints import DEFAULT_SAVE_HOOKS, get_default_hook
from speechbrain.utils.logger import get_logger
from speechbrain.utils.metric_stats import ErrorRateStats

from speechbrain_meta.adaptation import Adaptation, held_out_loss
from speechbrain_meta.algorithms import FineTune
from speechbrain_meta.asr import CTCASR, transcript_error_rates
from speechbrain_meta.brains import MetaBrain, meta_brain_class
from speechbrain_meta.data.checks import (
    BadInput,
    check_ctc_length,
    check_transcript,
    read_audio,
)
from speechbrain_meta.hub import (
    HubCTC,
    hub_brain_hparams,
    is_hub_model,
    load_hub_model,
    tokenizer_characters,
)
from speechbrain_meta.hub_transfer import (
    TASK_PARAMS_ADAPTATION,
    insert_task_params,
    load_task_params,
    read_meta_transfer,
    task_params_spec,
)
from speechbrain_meta.inner import InnerLoop
from speechbrain_meta.losses import ctc_loss
from speechbrain_meta.naming import canonical_name, matches
from speechbrain_meta.unsupervised import unsupervised_params

logger = get_logger(__name__)

EXPORT_MARK = "speechbrain_meta_export"
HPARAMS_FILE = "hyperparams.yaml"


def fingerprint(modules):
    """A hash of a model's weights and buffers (which model a state fits).

    Arguments
    ---------
    modules : torch.nn.Module
        The model.

    Returns
    -------
    str

    Example
    -------
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> fingerprint(a) == fingerprint(a), fingerprint(a) == fingerprint(b)
    (True, False)
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(modules.state_dict().items()):
        digest.update(canonical_name(name).encode())
        if torch.is_tensor(tensor):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


class TaskState:
    """What adaptation changed, for one task, and the model it belongs to.

    Arguments
    ---------
    weights : dict
        Canonical parameter name to adapted tensor (only the changed ones).
    model : str
        The fingerprint of the base model.
    info : dict, optional
        How it was made (adaptation settings, utterances, steps kept).

    Example
    -------
    >>> import tempfile
    >>> state = TaskState({"ctc_lin.w.bias": torch.zeros(3)}, "abc")
    >>> path = os.path.join(tempfile.mkdtemp(), "spk.pt")
    >>> state.save(path) > 0
    True
    >>> TaskState.load(path).model
    'abc'
    """

    def __init__(self, weights, model, info=None):
        self.weights = dict(weights)
        self.model = model
        self.info = dict(info or {})

    def save(self, path):
        """Writes the state (atomically: a temporary file, then a rename).

        Arguments
        ---------
        path : str
            The file.

        Returns
        -------
        int
            Its size in bytes.
        """
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.tmp"
        torch.save(
            {
                "weights": {n: w.cpu() for n, w in self.weights.items()},
                "model": self.model,
                "info": self.info,
                "format": "speechbrain-meta task state 1",
            },
            tmp,
        )
        os.replace(tmp, path)
        return os.path.getsize(path)

    @classmethod
    def load(cls, path):
        """Reads a state written by ``save``.

        Arguments
        ---------
        path : str
            The file.

        Returns
        -------
        TaskState
        """
        try:
            data = torch.load(path, map_location="cpu")
        except Exception as err:
            raise BadInput(f"not a task state ({err})", path) from None
        if not isinstance(data, dict) or "weights" not in data:
            raise BadInput("not a task state", path)
        return cls(data["weights"], data["model"], data.get("info"))

    def __repr__(self):
        n = sum(w.numel() for w in self.weights.values())
        return (
            f"TaskState({len(self.weights)} tensors, {n} values, "
            f"model={self.model})"
        )


class AdaptiveASR(Pretrained):
    """A recogniser that adapts to a speaker, accent or language.

    Load it with ``AdaptiveASR.from_hparams(source=DIR, savedir=...,
    run_opts={"device": ...})`` from a folder written by ``export_model``
    (a CTC model of this package, with the adaptation chosen for it), or
    from a SpeechBrain pretrained model in the hub format, unchanged: an
    ``EncoderASR`` (CTC) or ``EncoderDecoderASR`` (attention, with or
    without a CTC head) folder, loaded by SpeechBrain's own interface and
    adapted with its own tokenizer, loss and decoding
    (``speechbrain_meta.hub``) and ``HUB_ADAPTATION`` unless another is
    given.

    Arguments
    ---------
    *args : tuple
        As for ``Pretrained``.
    **kwargs : dict
        As for ``Pretrained``.
    """

    HPARAMS_NEEDED = ["sample_rate", "adaptation", "adapt_params"]
    # An export also needs compute_features, log_softmax, label_encoder,
    # blank_index and the modules normalize, encoder, ctc_lin (EXPORT_NEEDS).

    @classmethod
    def from_hparams(
        cls,
        source,
        hparams_file=HPARAMS_FILE,
        adaptation=None,
        adapt_params=None,
        task_params=None,
        **kwargs,
    ):
        """Loads an exported model or a hub-format SpeechBrain model.

        A hub model adapts all its weights by default; with
        ``task_params`` (``"lhuc"``, ``"lora"`` or a dict, see
        ``speechbrain_meta.hub_transfer``) task parameters are inserted into
        it and only those adapt (``TASK_PARAMS_ADAPTATION``), so a task
        state stays small. A hub folder written by meta-transfer
        (``meta_transfer.yaml`` beside the model) gets its task parameters,
        their meta-learned start and its adaptation without being asked.

        Arguments
        ---------
        source : str
            The model's folder.
        hparams_file : str
            Its hyperparameters file.
        adaptation : Adaptation or dict, optional
            How it adapts (default: an export's own; ``HUB_ADAPTATION`` for
            a hub model).
        adapt_params : list of str, optional
            Name patterns of the parameters that adapt (default: an
            export's own; every parameter of a hub model, or its task
            parameters).
        task_params : str or dict, optional
            Task parameters to insert into a hub model (default: those of
            its ``meta_transfer.yaml``, else none).
        **kwargs : dict
            As for ``Pretrained.from_hparams`` (``savedir``, ``run_opts``).

        Returns
        -------
        AdaptiveASR
        """
        folder = str(source)
        if (
            hparams_file == HPARAMS_FILE
            and not is_exported_model(folder)
            and is_hub_model(folder)
        ):
            interface = load_hub_model(
                folder, kwargs.get("savedir"), kwargs.get("run_opts")
            )
            if isinstance(adaptation, Adaptation):
                adaptation = adaptation.describe()
            modules = dict(interface.mods.items())
            spec, own_adaptation, own_params = _hub_task_params(
                folder, modules, task_params
            )
            hparams = {
                "sample_rate": getattr(interface.hparams, "sample_rate", 16000),
                "adaptation": adaptation or own_adaptation,
                "adapt_params": list(adapt_params or own_params),
                "hub_model": interface,
                "task_params": spec,
            }
            return cls(
                modules=modules,
                hparams=hparams,
                run_opts=kwargs.get("run_opts"),
            )
        if task_params is not None:
            raise ValueError(
                f"{folder}: task_params are for a hub-format model; an "
                "export has its own"
            )
        asr = super().from_hparams(source, hparams_file, **kwargs)
        if adaptation is not None:
            asr.adaptation = (
                adaptation
                if isinstance(adaptation, Adaptation)
                else Adaptation.from_dict(adaptation)
            )
        if adapt_params is not None:
            asr.set_adapt_params(adapt_params)
        return asr

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mods.eval()
        self.set_adapt_params(self.hparams.adapt_params)
        self.adaptation = Adaptation.from_dict(self.hparams.adaptation)
        self.unsupervised_adaptation = self._unsupervised_adaptation()
        # One utterance at a time (transcribe_adapting): the export's own
        # choice, else None (the unsupervised adaptation's).
        each = getattr(self.hparams, "unsupervised_each_adaptation", None)
        self.unsupervised_each_adaptation = (
            None if each is None else Adaptation.from_dict(each)
        )
        rule = getattr(self.hparams, "update_rule", None)
        hub = getattr(self.hparams, "hub_model", None)
        # SpeechBrain's interface class of a hub model (None: an export).
        self.hub_kind = None if hub is None else type(hub).__name__
        if hub is not None:
            brain_class, brain_hparams = hub_brain_hparams(hub)
            self.kind = "ctc" if brain_class is HubCTC else "seq2seq"
            self.labels = tokenizer_characters(hub.tokenizer)
        else:
            missing = [k for k in EXPORT_NEEDS if not hasattr(self.hparams, k)]
            missing += [k for k in EXPORT_MODULES if k not in self.mods]
            if missing:
                raise BadInput(f"the model's yaml lacks {missing}")
            brain_class, brain_hparams = (
                CTCASR,
                {
                    "compute_features": self.hparams.compute_features,
                    "log_softmax": self.hparams.log_softmax,
                    "blank_index": self.hparams.blank_index,
                    "ctc_cost": _CTCCost(self.hparams.blank_index),
                    "encoder_takes_lengths": getattr(
                        self.hparams, "encoder_takes_lengths", False
                    ),
                    # Validation on the error rate decodes as the recipes do.
                    "cer_computer": functools.partial(
                        ErrorRateStats, split_tokens=True
                    ),
                    "wer_computer": ErrorRateStats,
                },
            )
            self.kind = "ctc"
            encoder = self.hparams.label_encoder
            blank = encoder.ind2lab.get(self.hparams.blank_index)
            self.labels = {label for label in encoder.lab2ind if label != blank}
        Brain = meta_brain_class(brain_class, MetaBrain)
        self.brain = Brain(
            modules=dict(self.mods.items()),
            hparams={
                **brain_hparams,
                "adapt_in_train_mode": self.adaptation.train_mode,
            },
            run_opts={"device": self.device},
            meta_algorithm=FineTune(
                InnerLoop(
                    self.adaptation.steps,
                    update_rule=rule,
                    adapt_params=self.hparams.adapt_params,
                )
            ),
        )
        if hub is None:
            self.brain.tokenizer = self.hparams.label_encoder
        self.model_fingerprint = fingerprint(self.mods)
        self._decoders = []  # (task state, modules with its weights)
        self.samples_per_frame = self._samples_per_frame()

    def set_adapt_params(self, patterns):
        """Which parameters adapt (the others stay frozen).

        Arguments
        ---------
        patterns : list of str
            Parameter name patterns (``speechbrain_meta.naming.matches``).
        """
        self.hparams.adapt_params = list(patterns)
        for name, param in self.mods.named_parameters():
            param.requires_grad_(matches(name, self.hparams.adapt_params))
        if hasattr(self, "brain"):
            self.brain.meta_algorithm.inner_loop.adapt_params = list(patterns)

    def _unsupervised_adaptation(self):
        """The export's adaptation without transcripts, or the default.

        The default (``UNSUPERVISED_ADAPTATION``) adapts the model's own
        adaptable weights when they are task parameters (LHUC, LoRA...),
        its normalisation weights when its own are the whole model.
        """
        settings = getattr(self.hparams, "unsupervised_adaptation", None)
        if settings is not None:
            return Adaptation.from_dict(settings)
        params = unsupervised_params(self.hparams.adapt_params)
        return Adaptation.from_dict(
            {**UNSUPERVISED_ADAPTATION, "adapt_params": params}
        )

    def _samples_per_frame(self):
        """The model's time reduction, measured on one second of silence."""
        rate = self.hparams.sample_rate
        with torch.no_grad():
            out = self.encode_batch(
                torch.zeros(1, rate, device=self.device),
                torch.ones(1, device=self.device),
            )
        return rate / out.shape[1]

    # ------------------------------------------------------------------
    # Transcription.
    # ------------------------------------------------------------------
    def encode_batch(self, wavs, wav_lens, task_state=None):
        """Encoder output of a batch (with a task's weights if given).

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]`` waveforms at the model's rate.
        wav_lens : torch.Tensor
            Relative lengths.
        task_state : TaskState, optional
            An adaptation's weights.

        Returns
        -------
        torch.Tensor
            ``[batch, frames, ...]``: CTC log-probabilities, or the states
            an attention decoder attends to.
        """
        wavs, wav_lens = wavs.to(self.device), wav_lens.to(self.device)
        encode = (
            self.brain.encode
            if self.kind == "seq2seq"
            else self.brain.log_probs
        )
        with torch.no_grad():
            return self._with_task(task_state, encode, wavs, wav_lens)

    def _with_task(self, task_state, function, *args):
        """``function(*args)`` of the brain with a task's weights in place.

        An export decodes with a copy of the modules with the task's
        weights loaded (kept for the last few states): no per-call swap. A
        hub model's modules may hold state a copy cannot take (an attention
        decoder keeps the last encoder states): its weights are put in
        place for the call (``MetaBrain.call_with``).
        """
        if task_state is None:
            return function(*args)
        if self.hub_kind is not None:
            return self.brain.call_with(
                self._fast_weights(task_state), function, *args
            )
        modules, self.brain.modules = (
            self.brain.modules,
            self._adapted_modules(task_state),
        )
        try:
            return function(*args)
        finally:
            self.brain.modules = modules

    def _adapted_modules(self, task_state, cache_size=4):
        """The modules with a task state's weights in place (cached)."""
        for i, (state, modules) in enumerate(self._decoders):
            if state is task_state:
                self._decoders.insert(0, self._decoders.pop(i))
                return modules
        modules = copy.deepcopy(self.brain.modules)
        with torch.no_grad():
            params = dict(modules.named_parameters())
            for name, weight in self._fast_weights(task_state).items():
                params[name].copy_(weight)
        modules.eval()
        self._decoders = [(task_state, modules)] + self._decoders
        del self._decoders[cache_size:]
        return modules

    def transcribe_batch(self, wavs, wav_lens, task_state=None):
        """Transcribes a batch (``EncoderASR`` conventions).

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, time]`` waveforms at the model's rate.
        wav_lens : torch.Tensor
            Relative lengths.
        task_state : TaskState, optional
            An adaptation's weights (None: the base model).

        Returns
        -------
        tuple
            ``(predicted_words, predicted_tokens)``: one string and one
            token sequence per utterance.
        """
        wavs, wav_lens = wavs.to(self.device), wav_lens.to(self.device)
        return self._with_task(
            task_state, self.brain.transcribe, wavs, wav_lens
        )

    def transcribe_file(self, path, task_state=None, notes=None):
        """Transcribes one audio file.

        Arguments
        ---------
        path : str
            The file (another rate is resampled, stereo mixed down: said in
            ``notes``).
        task_state : TaskState, optional
            An adaptation's weights.
        notes : list, optional
            Receives a line per automatic fix of the input.

        Returns
        -------
        str
        """
        wav = read_audio(path, self.hparams.sample_rate, notes=notes)
        words, _ = self.transcribe_batch(
            wav.unsqueeze(0), torch.ones(1), task_state
        )
        return words[0]

    # ------------------------------------------------------------------
    # Adaptation.
    # ------------------------------------------------------------------
    def utterance(
        self, wav, transcript, name="utterance", drop_unknown=False, notes=None
    ):
        """One checked support utterance, as adaptation reads it.

        Arguments
        ---------
        wav : str or torch.Tensor
            An audio file, or samples at the model's rate.
        transcript : str
            What is said.
        name : str
            Names the utterance in messages.
        drop_unknown : bool
            Drop characters outside the model's labels instead of refusing.
        notes : list, optional
            Receives a line per automatic fix.

        Returns
        -------
        dict
            ``id``, ``sig``, ``wrd``, ``tokens``.

        Raises
        ------
        BadInput
            What is wrong with it, naming it.
        """
        utt = self.audio(wav, name, notes)
        name, wav = utt["id"], utt["sig"]
        try:
            text = check_transcript(
                transcript, self.labels, drop_unknown, notes
            )
            if self.kind == "ctc":
                check_ctc_length(len(wav), text, self.samples_per_frame)
        except BadInput as err:
            raise BadInput(err.reason, name) from None
        return {
            "id": name,
            "sig": wav,
            "wrd": text,
            **self.brain.tokenize(text),
        }

    def adapt(
        self,
        wavs,
        transcripts=None,
        steps=None,
        safe=True,
        drop_unknown=False,
        notes=None,
        progress=None,
        unsupervised=None,
        adaptation=None,
    ):
        """Adapts to a task from a few utterances, the model's own way.

        With transcripts, by the exported ``adaptation``; without
        (``transcripts=None``, or ``unsupervised=True``), from the audio
        alone, by ``unsupervised_adaptation`` (the export's, or
        ``UNSUPERVISED_ADAPTATION``; see ``speechbrain_meta.unsupervised``).

        Arguments
        ---------
        wavs : list of str or torch.Tensor
            Audio files, or waveforms at the model's rate.
        transcripts : list of str, optional
            What each says (None: adapt without transcripts).
        steps : int, optional
            Adaptation steps (default: the exported adaptation's).
        safe : bool
            Validate the adaptation by cross-validation over the support
            (the exported ``folds``): keep the step count the folds agree
            on, or abstain; False adapts for all the steps on every
            utterance.
        drop_unknown : bool
            Drop characters outside the model's labels instead of refusing.
        notes : list, optional
            Receives a line per automatic fix of the input.
        progress : callable, optional
            Called with the step number after every adaptation step.
        unsupervised : bool, optional
            Adapt from the audio alone (default: when there are no
            transcripts; True ignores the transcripts given).
        adaptation : Adaptation, optional
            Adapt this way instead of the model's own (``adaptation`` or
            ``unsupervised_adaptation``).

        Returns
        -------
        TaskState
            Only what adaptation changed, and this model's fingerprint.
        """
        if unsupervised is None:
            unsupervised = transcripts is None
        if not unsupervised and len(wavs) != len(transcripts):
            raise ValueError(
                f"{len(wavs)} audio inputs for {len(transcripts)} transcripts"
            )
        if not wavs:
            raise BadInput("empty support set: nothing to adapt to")
        own = adaptation is None
        if unsupervised:
            support = [
                self.audio(w, f"utterance {i}", notes)
                for i, w in enumerate(wavs)
            ]
            adaptation = adaptation or self.unsupervised_adaptation
        else:
            support = [
                self.utterance(w, t, f"utterance {i}", drop_unknown, notes)
                for i, (w, t) in enumerate(zip(wavs, transcripts))
            ]
            adaptation = adaptation or self.adaptation
        if steps is not None:
            adaptation = adaptation.replace(steps=int(steps))
        if not safe:
            adaptation = adaptation.replace(folds=0)
        kept, reason = adaptation.steps, "not validated (safe=False)"
        if adaptation.steps == 0:
            reason = (
                "the model's adaptation has 0 steps: where it was chosen "
                "(meta-dev), no setting of it lowered the error rate"
                if own and steps is None
                else "0 steps asked"
            )
        with self._trainable(adaptation.adapt_params):
            if adaptation.folds and adaptation.steps:
                evidence = adaptation.validate(self.brain, support)
                kept, reason = evidence["steps"], evidence["reason"]
            path = adaptation.replace(folds=0, steps=kept).trajectory(
                self.brain, support, progress
            )
        base = dict(self.mods.named_parameters())
        weights = {
            canonical_name(n): w.detach().cpu()
            for n, w in path[-1].items()
            if not torch.equal(w, base[n].detach())
        }
        return TaskState(
            weights,
            self.model_fingerprint,
            {
                "adaptation": adaptation.describe(),
                "steps_kept": kept,
                "abstained": kept == 0,
                "why": reason,
                "utterances": len(support),
                "unsupervised": bool(unsupervised),
                # What a hub model had inserted: load it so to use the state.
                "task_params": getattr(self.hparams, "task_params", None),
            },
        )

    @contextlib.contextmanager
    def _trainable(self, patterns):
        """The weights an adaptation's own patterns name can adapt."""
        if patterns is None:
            yield
            return
        saved = {n: p.requires_grad for n, p in self.mods.named_parameters()}
        chosen = [
            n for n, p in self.mods.named_parameters() if matches(n, patterns)
        ]
        if not chosen:
            raise BadInput(
                f"no weight of this model matches {patterns} (its names: "
                f"{list(saved)[:8]}...): pass adapt_params"
            )
        try:
            for name, param in self.mods.named_parameters():
                param.requires_grad_(name in chosen)
            yield
        finally:
            for name, param in self.mods.named_parameters():
                param.requires_grad_(saved[name])

    def audio(self, wav, name="utterance", notes=None):
        """One checked untranscribed utterance, as adaptation reads it.

        Arguments
        ---------
        wav : str or torch.Tensor
            An audio file, or samples at the model's rate.
        name : str
            Names the utterance in messages.
        notes : list, optional
            Receives a line per automatic fix.

        Returns
        -------
        dict
            ``id``, ``sig``.

        Raises
        ------
        BadInput
            What is wrong with it, naming it.
        """
        if isinstance(wav, (str, os.PathLike)):
            name = str(wav)
            wav = read_audio(name, self.hparams.sample_rate, notes=notes)
        else:
            wav = torch.as_tensor(wav, dtype=torch.float32).reshape(-1)
        if wav.numel() == 0:
            raise BadInput("empty audio (no samples)", name)
        if not torch.isfinite(wav).all():
            raise BadInput("NaN or inf samples", name)
        return {"id": name, "sig": wav}

    def each_utterance_adaptation(self):
        """How ``transcribe_adapting`` adapts to one utterance alone.

        Returns
        -------
        Adaptation
            The export's ``unsupervised_each_adaptation`` (chosen on
            meta-dev one utterance at a time), else the
            ``unsupervised_adaptation``.
        """
        return self.unsupervised_each_adaptation or self.unsupervised_adaptation

    def transcribe_adapting(self, wav, notes=None, min_length_ratio=0.5):
        """Adapts to one utterance alone (no transcript), transcribes it.

        Episodic test-time adaptation (SUTA): the adaptation without
        transcripts for one utterance (``each_utterance_adaptation``: a
        recipe export's was chosen on meta-dev, zero steps where none
        helped there) on this utterance only (one utterance cannot be
        cross-validated: its steps are bounded by ``max_update``), its
        transcript, and the base model again for the next file. Guard: if
        the adapted
        transcript is shorter than ``min_length_ratio`` times the unadapted
        one (the failure of entropy minimisation: everything blank), the
        unadapted transcript is kept.

        Arguments
        ---------
        wav : str or torch.Tensor
            The utterance.
        notes : list, optional
            Receives a line per automatic fix of the input.
        min_length_ratio : float
            See above.

        Returns
        -------
        tuple
            ``(transcript, info)``; ``info["kept"]`` says whether the
            adapted transcript was kept.
        """
        utt = self.audio(wav, notes=notes)
        sig = utt["sig"].unsqueeze(0)
        lens = torch.ones(1)
        plain = self.transcribe_batch(sig, lens)[0][0]
        state = self.adapt(
            [utt["sig"]],
            safe=False,
            unsupervised=True,
            adaptation=self.each_utterance_adaptation(),
        )
        adapted = self.transcribe_batch(sig, lens, state)[0][0]
        kept = len(adapted) >= min_length_ratio * len(plain)
        info = {"unadapted": plain, "adapted": adapted, "kept": kept}
        return (adapted if kept else plain), info

    def error_rates(self, utterances, task_state=None):
        """CER and WER of the model's transcripts of some utterances.

        Arguments
        ---------
        utterances : list of dict
            Each with ``id``, ``sig`` (a waveform at the model's rate) and
            ``wrd`` (what it says), as ``utterance`` returns them.
        task_state : TaskState, optional
            Adapted weights to use.

        Returns
        -------
        tuple of float
            ``(cer, wer)`` as fractions (CER over characters with one
            token per word boundary, as SpeechBrain's recipes score).
        """
        from speechbrain.dataio.batch import PaddedBatch

        batch = PaddedBatch([{"sig": u["sig"]} for u in utterances])
        hyps, _ = self.transcribe_batch(*batch.sig, task_state=task_state)
        return transcript_error_rates(hyps, [u["wrd"] for u in utterances])

    def loss(self, utterances, task_state=None):
        """The mean CTC loss of checked utterances (``utterance``).

        Arguments
        ---------
        utterances : list of dict
            From ``utterance``.
        task_state : TaskState, optional
            An adaptation's weights.

        Returns
        -------
        float
        """
        batch = sb.dataio.batch.PaddedBatch(utterances).to(self.device)
        return held_out_loss(self.brain, self._fast_weights(task_state), batch)

    def check_task_state(self, task_state, path=None):
        """Refuses a task state made on another model.

        Arguments
        ---------
        task_state : TaskState
            The state.
        path : str, optional
            Its file, for the message.
        """
        if task_state.model != self.model_fingerprint:
            raise BadInput(
                f"task state of another model (fingerprint "
                f"{task_state.model}, this model {self.model_fingerprint})",
                path,
            )

    def _fast_weights(self, task_state):
        if task_state is None:
            return {}
        self.check_task_state(task_state)
        names = {canonical_name(n): n for n, _ in self.mods.named_parameters()}
        return {
            names[n]: w.to(self.device) for n, w in task_state.weights.items()
        }


def _hub_task_params(folder, modules, task_params):
    """Inserts a hub model's task parameters (asked for, or its
    meta-transfer's, loaded with their learned start).

    Returns
    -------
    tuple
        ``(spec or None, default adaptation, default adapt_params)``.
    """
    transfer = read_meta_transfer(folder)
    if transfer is not None:
        if task_params is not None and (
            task_params_spec(task_params) != transfer["task_params"]
        ):
            raise ValueError(
                f"{folder}: its meta-transfer inserts "
                f"{transfer['task_params']}, not {task_params}"
            )
        patterns = insert_task_params(modules, transfer["task_params"])
        load_task_params(modules, transfer["state"])
        return transfer["task_params"], transfer["adaptation"], patterns
    if task_params is None:
        return None, HUB_ADAPTATION, ["*"]
    spec = task_params_spec(task_params)
    return spec, TASK_PARAMS_ADAPTATION, insert_task_params(modules, spec)


class _CTCCost:
    """The twice-differentiable-when-needed CTC loss at a blank index."""

    def __init__(self, blank_index):
        self.blank_index = blank_index

    def __call__(self, log_probs, targets, input_lens, target_lens):
        return ctc_loss(
            log_probs, targets, input_lens, target_lens, self.blank_index
        )


# What an export's yaml must give (a hub model needs only what
# SpeechBrain's interface checks).
EXPORT_NEEDS = (
    "compute_features",
    "log_softmax",
    "label_encoder",
    "blank_index",
)
EXPORT_MODULES = ("normalize", "encoder", "ctc_lin")

# The adaptation of a hub model that was never meta-trained: Adam at a
# fine-tuning rate, the weights anchored to the pretrained ones (L2-SP) and
# kept within 10 % of their norm per tensor, and validated by 5-fold
# cross-validation over the support on the error rate (abstaining when the
# folds do not agree that it helps).
HUB_ADAPTATION = {
    "rule": "adam",
    "lr": 1e-4,
    "steps": 20,
    "mode": "eval",
    "l2sp": 1.0,
    "max_update": 0.1,
    "folds": 5,
    "criterion": "error",
}

# Adaptation from untranscribed audio (speechbrain_meta.unsupervised), for
# a model whose export says nothing else: SUTA's objective (entropy and
# class confusion at temperature 2.5) on the normalisation weights (or the
# method's own task parameters when those are not the whole model), Adam
# 1e-3 for up to 10 steps, each tensor kept within 10 % of its norm; with
# two or more utterances the steps are validated on held-out audio by the
# same objective (5 folds; the model stays unadapted when they disagree).
UNSUPERVISED_ADAPTATION = {
    "rule": "adam",
    "lr": 1e-3,
    "steps": 10,
    "mode": "eval",
    "max_update": 0.1,
    "folds": 5,
    "unsupervised": {
        "objective": "entropy",
        "temperature": 2.5,
        "mcc": 0.7,
        "blank_threshold": 0.99,
    },
}

# Settings CTCASR's forward reads besides the modules.
FORWARD_KEYS = ("encoder_takes_lengths",)

MODEL_KEYS = (
    "sample_rate",
    "blank_index",
    "compute_features",
    "log_softmax",
    "normalize",
    "encoder",
    "ctc_lin",
)


def export_model(
    folder,
    training_yaml,
    modules,
    label_encoder,
    adaptation,
    adapt_params,
    update_rule=None,
    info=None,
    unsupervised_adaptation=None,
    unsupervised_each_adaptation=None,
):
    """Writes a self-contained inference folder for ``AdaptiveASR``.

    The model's definitions are taken from the training run's resolved
    ``hyperparams.yaml`` (so they are never written twice); task
    parameters inserted with ``speechbrain.nnet.adapters.AdaptedModel``
    (the ``adapters`` and ``adapted_modules`` keys) are inserted again at
    load time, before the weights are loaded.

    Arguments
    ---------
    folder : str
        Where to write (``<output_folder>/inference``).
    training_yaml : str
        The training run's resolved ``hyperparams.yaml``.
    modules : dict
        The trained modules (``normalize``, ``encoder``, ``ctc_lin``).
    label_encoder : CTCTextEncoder
        The labels.
    adaptation : Adaptation
        The adaptation the model was evaluated with (validated by default:
        give it ``folds``).
    adapt_params : list of str
        fnmatch patterns of the parameters that adapt.
    update_rule : torch.nn.Module, optional
        The model's inner-loop rule: a learned rule (its state is saved
        too), or plain SGD (its rate is written for the ``own`` rule).
    info : dict, optional
        Written in the yaml's header comment (method, recipe, results).
    unsupervised_adaptation : Adaptation, optional
        How the model adapts without transcripts (chosen on meta-dev);
        None: ``AdaptiveASR``'s ``UNSUPERVISED_ADAPTATION``.
    unsupervised_each_adaptation : Adaptation, optional
        The same, one utterance at a time (``transcribe_adapting``); None:
        ``unsupervised_adaptation``.

    Returns
    -------
    str
        The folder.
    """
    os.makedirs(folder, exist_ok=True)
    yaml = ruamel.yaml.YAML()
    source = yaml.load(training_yaml)
    missing = [k for k in MODEL_KEYS if k not in source]
    if missing:
        raise KeyError(f"export_model: the training yaml has no {missing}")
    out = ruamel.yaml.comments.CommentedMap()
    out[EXPORT_MARK] = 1
    for key in MODEL_KEYS:
        out[key] = source[key]
    for key in FORWARD_KEYS:  # settings of the forward, when the run has them
        if key in source:
            out[key] = source[key]
    adapted = list(source.get("adapted_modules") or [])
    if adapted:
        # The wrapped modules are built again the way training built them.
        out["adapters"] = source["adapters"]
        for key in adapted:
            out[f"{key}_base"] = out.pop(key)
    learned = update_rule is not None and any(
        True for _ in update_rule.parameters()
    )

    def concrete(adaptation):
        if adaptation.rule == "own" and not learned:
            # The model's own rule is plain SGD: say at which rate.
            return adaptation.replace(rule="sgd", lr=update_rule.lr)
        return adaptation

    rule_node = None
    if learned:
        rule_node = source.get("meta", {}).get("update_rule")
        if rule_node is None:
            raise KeyError(
                "export_model: a learned update rule, but no meta[update_rule] "
                "in the training yaml"
            )
        out["update_rule"] = rule_node
    out["adapt_params"] = list(adapt_params)
    out["adaptation"] = concrete(adaptation).describe()
    if unsupervised_adaptation is not None:
        out["unsupervised_adaptation"] = concrete(
            unsupervised_adaptation
        ).describe()
    if unsupervised_each_adaptation is not None:
        out["unsupervised_each_adaptation"] = concrete(
            unsupervised_each_adaptation
        ).describe()
    text = io_text(yaml, out)
    text += "".join(
        f"{key}: !apply:speechbrain_meta.task_params.adapt_module "
        f"[!ref <{key}_base>, !ref <adapters>]\n"
        for key in adapted
    )
    loadables = ["normalize", "encoder", "ctc_lin", "label_encoder"]
    if rule_node is not None:
        loadables.append("update_rule")
    text += (
        "modules:\n"
        + "".join(f"    {k}: !ref <{k}>\n" for k in MODEL_KEYS[4:])
        + "label_encoder: !new:speechbrain.dataio.encoder.CTCTextEncoder\n"
        + "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        + "    loadables:\n"
        + "".join(f"        {k}: !ref <{k}>\n" for k in loadables)
    )
    header = [
        "# An adaptive ASR model exported by speechbrain-meta "
        f"({datetime.date.today()}). Load it with",
        "#   speechbrain_meta.inference.AdaptiveASR.from_hparams(",
        "#       source=<this folder>, savedir=<a folder>)",
        "# or speechbrain-meta-adapt / speechbrain-meta-transcribe.",
    ]
    header += [f"# {k}: {v}" for k, v in (info or {}).items()]
    with open(
        os.path.join(folder, HPARAMS_FILE), "w", encoding="utf-8"
    ) as fout:
        fout.write("\n".join(header) + "\n" + text)
    objects = {k: modules[k] for k in MODEL_KEYS[4:]}
    objects["label_encoder"] = label_encoder
    if rule_node is not None:
        objects["update_rule"] = update_rule
    for name, obj in objects.items():
        hook = get_default_hook(obj, DEFAULT_SAVE_HOOKS)
        # SpeechBrain's hooks run on the main process and broadcast to the
        # others; an export runs on the main process alone: the hook itself.
        hook = getattr(hook, "__wrapped__", hook)
        path = os.path.join(folder, f"{name}.ckpt")
        if isinstance(obj, AdaptedModel):
            # SpeechBrain's saver keeps only the adapters (the backbone
            # comes from elsewhere in training); an export is the whole
            # model, which its loader reads all the same.
            torch.save(obj.state_dict(), path)
        elif hook is not None:
            hook(obj, path)
        else:
            torch.save(obj.state_dict(), path)
    return folder


def io_text(yaml, node):
    """A ruamel node dumped as yaml text."""
    from io import StringIO

    stream = StringIO()
    yaml.dump(node, stream)
    return stream.getvalue()


def is_exported_model(folder):
    """Whether a folder holds a model written by ``export_model``.

    Arguments
    ---------
    folder : str
        The folder.

    Returns
    -------
    bool

    Example
    -------
    >>> is_exported_model("/nonexistent")
    False
    """
    path = os.path.join(folder, HPARAMS_FILE)
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as fin:
        return any(line.startswith(f"{EXPORT_MARK}:") for line in fin)


def export_run(
    output_folder,
    brain,
    label_encoder,
    adaptation,
    info=None,
    unsupervised_adaptation=None,
    unsupervised_each_adaptation=None,
):
    """``export_model`` for a recipe run: ``<output_folder>/inference``.

    Arguments
    ---------
    output_folder : str
        The run's folder, with the ``hyperparams.yaml`` it was run with.
    brain : MetaBrain
        The trained method (its modules, what adapts, its update rule).
    label_encoder : CTCTextEncoder
        The labels.
    adaptation : Adaptation
        How the exported model adapts.
    info : dict, optional
        For the yaml's header.
    unsupervised_adaptation, unsupervised_each_adaptation : Adaptation
        How it adapts without transcripts, from a support set and one
        utterance at a time (optional, see ``export_model``).

    Returns
    -------
    str
        The inference folder.
    """
    with open(
        os.path.join(output_folder, HPARAMS_FILE), encoding="utf-8"
    ) as fin:
        training_yaml = fin.read()
    return export_model(
        os.path.join(output_folder, "inference"),
        training_yaml,
        dict(brain.modules.items()),
        label_encoder,
        adaptation,
        brain.inner_loop.adapt_params,
        update_rule=brain.update_rule,
        info=info,
        unsupervised_adaptation=unsupervised_adaptation,
        unsupervised_each_adaptation=unsupervised_each_adaptation,
    )
