"""espeak-ng in-process through ctypes, and a fresh-process batch worker.

espeak-ng keeps state across calls inside a process (the same text and
voice give slightly different samples depending on what was synthesised
before, even after ``espeak_Terminate``/``espeak_Initialize``), so the
corpus synthesises each speaker's utterances in a fresh process: this file
runs as a script with only numpy, ctypes and ``espeakng-loader``, reads a
JSON list of requests on stdin and writes the samples to an ``.npz``.

Authors
 * speechbrain-meta developers 2026
"""

import ctypes
import json
import sys
import threading

import numpy as np

# espeak-ng API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_PHONEMES_IPA = 0x02


class EspeakError(RuntimeError):
    """espeak-ng could not be loaded or could not produce a voice.

    Example
    -------
    >>> isinstance(EspeakError("no voice"), RuntimeError)
    True
    """


class Espeak:
    """In-process espeak-ng synthesiser (ctypes over ``espeakng-loader``).

    espeak-ng keeps global state, so there is one instance per process
    (``Espeak.get()``), and calls are serialised by a lock.

    Example
    -------
    >>> tts = Espeak.get()
    >>> wav = tts.synthesize("4 1", "en")
    >>> wav.dtype, tts.sample_rate, len(wav) > 0.3 * tts.sample_rate
    (dtype('int16'), 22050, True)
    >>> tts.phonemes("4 1", "en")
    'fˈɔː wˈɒn'
    """

    _instance = None
    _lock = threading.Lock()

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as err:  # pragma: no cover - install problem
            raise EspeakError(
                "The SynthDigits corpus needs espeak-ng from the "
                "`espeakng-loader` package: pip install espeakng-loader "
                "(or speechbrain-meta[synth])."
            ) from err
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        self._libc = ctypes.CDLL(None)
        self._libc.srand.argtypes = [ctypes.c_uint]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0
        )
        if self.sample_rate <= 0:
            raise EspeakError(f"espeak_Initialize failed ({self.sample_rate})")
        self._chunks = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_short),
            ctypes.c_int,
            ctypes.c_void_p,
        )

        def collect(wav, n_samples, events):
            if n_samples > 0:
                chunk = np.ctypeslib.as_array(wav, shape=(n_samples,))
                self._chunks.append(chunk.copy())
            return 0

        self._callback = callback_type(collect)  # keep a reference
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self._voice = None

    @classmethod
    def get(cls):
        """The process-wide synthesiser.

        Returns
        -------
        Espeak
        """
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _set_voice(self, voice):
        if voice != self._voice:
            status = self._lib.espeak_SetVoiceByName(voice.encode())
            if status != 0:
                raise EspeakError(f"espeak-ng has no voice {voice!r}")
            self._voice = voice

    def synthesize(
        self,
        text,
        voice,
        rate=175,
        pitch=50,
        pitch_range=50,
        volume=100,
        seed=None,
    ):
        """Reads a text aloud.

        Arguments
        ---------
        text : str
            What to say.
        voice : str
            An espeak voice name: a language, optionally ``+variant``.
        rate : int
            Words per minute.
        pitch : int
            Base pitch, 0-100.
        pitch_range : int
            Pitch range, 0-100.
        volume : int
            Amplitude, 0-200.
        seed : int, optional
            Seeds espeak-ng's random generator (breathy voices, noise) and
            libc's ``rand`` which it also uses.

        Returns
        -------
        numpy.ndarray
            int16 samples at ``self.sample_rate``.
        """
        encoded = text.encode("utf-8")
        with self._lock:
            self._set_voice(voice)
            for param, value in (
                (_ESPEAK_RATE, rate),
                (_ESPEAK_PITCH, pitch),
                (_ESPEAK_RANGE, pitch_range),
                (_ESPEAK_VOLUME, volume),
            ):
                self._lib.espeak_SetParameter(param, int(value), 0)
            if seed is not None:
                self._lib.espeak_ng_SetRandSeed(int(seed))
                self._libc.srand(int(seed) & 0x7FFFFFFF)
            self._chunks = []
            buffer = ctypes.create_string_buffer(encoded)
            status = self._lib.espeak_Synth(
                buffer,
                len(encoded) + 1,
                0,
                0,
                0,
                _ESPEAK_CHARS_UTF8,
                None,
                None,
            )
            chunks, self._chunks = self._chunks, []
        if status != 0 or not chunks:
            raise EspeakError(f"espeak-ng produced no audio for {voice!r}")
        return np.concatenate(chunks)

    def phonemes(self, text, voice):
        """IPA phones of a text as the voice's language reads it.

        Arguments
        ---------
        text : str
            The text.
        voice : str
            An espeak voice name.

        Returns
        -------
        str
            Space-separated IPA words.
        """
        with self._lock:
            self._set_voice(voice)
            pointer = ctypes.c_char_p(text.encode("utf-8"))
            words = []
            while pointer.value:
                out = self._lib.espeak_TextToPhonemes(
                    ctypes.byref(pointer), _ESPEAK_CHARS_UTF8, _PHONEMES_IPA
                )
                if out:
                    words.append(out.decode("utf-8").strip())
        return " ".join(w for w in words if w)


def synthesize_requests(requests):
    """Synthesises a list of requests with the process's espeak-ng.

    Arguments
    ---------
    requests : list of dict
        ``text``, ``voice`` and optionally ``rate``, ``pitch``,
        ``pitch_range``, ``volume``.

    Returns
    -------
    tuple
        ``(sample_rate, samples)``; each entry of ``samples`` is an int16
        array, or a string saying why espeak-ng failed.

    Example
    -------
    >>> rate, out = synthesize_requests([{"text": "7", "voice": "de"},
    ...                                  {"text": "7", "voice": "zz"}])
    >>> rate, out[0].dtype, out[1]
    (22050, dtype('int16'), "espeak-ng has no voice 'zz'")
    """
    tts = Espeak.get()
    samples = []
    for request in requests:
        params = dict(request)
        text, voice = params.pop("text"), params.pop("voice")
        try:
            samples.append(tts.synthesize(text, voice, **params))
        except EspeakError as err:
            samples.append(str(err))
    return tts.sample_rate, samples


def main():
    """Script entry: JSON requests on stdin, ``.npz`` written to argv[1].

    Example
    -------
    >>> import subprocess, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "s.npz")
    >>> _ = subprocess.run([sys.executable, __file__, out], check=True,
    ...                    input='[{"text": "3", "voice": "fr"}]', text=True)
    >>> sorted(np.load(out).files)
    ['errors', 'sample_rate', 'u0']
    """
    requests = json.load(sys.stdin)
    sample_rate, samples = synthesize_requests(requests)
    arrays = {"sample_rate": np.array(sample_rate)}
    errors = {}
    for i, item in enumerate(samples):
        if isinstance(item, str):
            errors[i] = item
        else:
            arrays[f"u{i}"] = item
    arrays["errors"] = np.array(json.dumps(errors))
    np.savez(sys.argv[1], **arrays)


if __name__ == "__main__":
    main()
