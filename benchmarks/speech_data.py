"""Spoken digit strings and short word sequences, synthesized offline with espeak-ng, for the Whisper benchmark.

The synthesizer is the espeak-ng library bundled by the `espeakng-loader` wheel (`pip install
espeakng-loader`: the shared library and its voice data, no system package), called through its C
API with `ctypes`: `espeak_Initialize` in synchronous mode, a callback collecting the 16-bit samples,
`espeak_SetVoiceByName` ("en-US+f2": a language's voice with a variant's pitch, formants and timbre),
`espeak_SetParameter` for the speaking rate (words per minute) and the pitch, `espeak_Synth`. espeak-ng
speaks at 22,050 Hz; the waveforms are resampled to Whisper's 16 kHz (`scipy.signal.resample_poly`,
320/441) and scaled to [-1, 1].

Transcripts are word sequences over a closed vocabulary: the ten digit names ("zero" ... "nine") and
ten short command words ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go").
`split_strings` draws the strings of the test set first and keeps them out of the training set, so a
test utterance is always a string never heard in training (in any voice or speed).

Each utterance varies the voice, the rate, the pitch, the loudness (a gain), where it starts (up to
0.1 s of leading silence) and a little white noise (30 to 50 dB below the speech), all drawn from one
seeded `numpy.random.Generator`: the same seed gives the same data set.
"""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np

SAMPLE_RATE = 16000
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# Token ids: 0 padding, 1 start, 2 end (keras_models.recurrent's START_ID and END_ID), then the words.
SPECIAL_TOKENS = ("<pad>", "<start>", "<end>")
VOCABULARY = (*SPECIAL_TOKENS, *DIGITS, *COMMANDS)
WORD_IDS = {word: index for index, word in enumerate(VOCABULARY)}

# Voices heard in training: English dialects, each with a variant (male m*, female f*).
TRAIN_VOICES = ("en-US+m1", "en-US+f2", "en+m3", "en+f3", "en-GB-scotland+m2", "en-GB-x-rp+f4", "en-029+m4",
                "en-US-nyc+f1")
# Voices never heard in training, for a second test column.
UNSEEN_VOICES = ("en-GB-x-gbclan+m6", "en-US+f5")
RATES = (130, 150, 175, 200, 225)  # words per minute (espeak-ng's default is 175)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POSITION_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3  # espeak_PARAMETER values


class Espeak:
    """The espeak-ng library of the `espeakng-loader` wheel, loaded once per process."""

    _instance = None

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as error:
            raise RuntimeError(
                "Speech synthesis needs the espeakng-loader wheel (espeak-ng and its voice data): "
                "pip install espeakng-loader"
            ) from error
        library = ctypes.CDLL(espeakng_loader.get_library_path())
        library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        library.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                         ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if self.rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {self.rate}).")
        self._chunks = []

        def collect(samples, count, events):
            if count > 0:
                self._chunks.append(np.ctypeslib.as_array(samples, (count,)).copy())
            return 0

        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = callback_type(collect)  # kept alive as long as the library may call it
        library.espeak_SetSynthCallback(self._callback)
        self.library = library

    @classmethod
    def get(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def synthesize(self, text, voice, rate=175, pitch=50):
        """`text` spoken by `voice` at `rate` words per minute and `pitch` (0-100): float32 samples at
        16 kHz in [-1, 1], without the silence before and after the speech."""
        from scipy.signal import resample_poly

        if self.library.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}.")
        self.library.espeak_SetParameter(_RATE, int(rate), 0)
        self.library.espeak_SetParameter(_PITCH, int(pitch), 0)
        self._chunks = []
        data = text.encode()
        status = self.library.espeak_Synth(data, len(data) + 1, 0, _POSITION_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed on {text!r} (status {status}).")
        self.library.espeak_Synchronize()
        samples = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        loud = np.flatnonzero(np.abs(samples) > 1e-3)  # the silence espeak-ng leaves at both ends is cut
        samples = samples[loud[0]:loud[-1] + 1] if len(loud) else samples
        return resample_poly(samples, 320, 441).astype(np.float32)  # 22,050 Hz to 16 kHz


def random_strings(kind, count, rng):
    """`count` distinct word strings: `"digits"` (3 to 5 digit names) or `"commands"` (2 or 3 words)."""
    words, lengths = (DIGITS, (3, 4, 5)) if kind == "digits" else (COMMANDS, (2, 3))
    strings = set()
    while len(strings) < count:
        length = lengths[rng.integers(len(lengths))]
        strings.add(" ".join(words[i] for i in rng.integers(0, len(words), length)))
    return sorted(strings)


def split_strings(kind, train_count, test_count, seed=0):
    """Disjoint training and test strings: the test strings are drawn first and never trained on."""
    rng = np.random.default_rng(seed)
    test = random_strings(kind, test_count, rng)
    held_out = set(test)
    train = []
    while len(train) < train_count:
        train += [s for s in random_strings(kind, train_count, rng) if s not in held_out and s not in train]
    return train[:train_count], test


@dataclasses.dataclass
class SpeechSet:
    """Utterances: waveforms padded to one length, their transcripts and how each was spoken."""

    waveforms: np.ndarray  # float32 (count, num_samples)
    texts: list
    voices: list
    rates: list

    def target_ids(self, steps):
        """Transcripts as word ids `(count, steps)`, padded with 0 (no start or end ids)."""
        ids = np.zeros((len(self.texts), steps), np.int32)
        for row, text in enumerate(self.texts):
            words = [WORD_IDS[word] for word in text.split()]
            ids[row, :len(words)] = words
        return ids


def synthesize_set(strings, voices, num_samples, repeats=1, seed=0, noise_db=(30.0, 50.0)):
    """Every string spoken `repeats` times, each time by a voice, rate and pitch drawn at random, with a
    random gain, leading silence (up to 0.1 s) and white noise; padded with silence to `num_samples`.

    Raises:
        ValueError: an utterance (with its leading silence) is longer than `num_samples`.
    """
    espeak = Espeak.get()
    rng = np.random.default_rng(seed)
    waveforms, texts, used_voices, rates = [], [], [], []
    for text in strings:
        for _ in range(repeats):
            voice = voices[rng.integers(len(voices))]
            rate = int(RATES[rng.integers(len(RATES))])
            speech = espeak.synthesize(text, voice, rate=rate, pitch=int(rng.integers(35, 66)))
            speech = speech / max(np.abs(speech).max(), 1e-6) * rng.uniform(0.3, 0.9)
            offset = int(rng.integers(0, int(0.1 * SAMPLE_RATE)))
            if offset + len(speech) > num_samples:
                raise ValueError(
                    f"{text!r} by {voice} at {rate} words per minute lasts "
                    f"{(offset + len(speech)) / SAMPLE_RATE:.2f} s "
                    f"with its leading silence, more than {num_samples / SAMPLE_RATE:.2f} s: raise num_samples."
                )
            waveform = np.zeros(num_samples, np.float32)
            waveform[offset:offset + len(speech)] = speech
            power = np.mean(speech ** 2)
            noise_power = power / 10 ** (rng.uniform(*noise_db) / 10)
            waveform += rng.normal(0.0, np.sqrt(noise_power), num_samples).astype(np.float32)
            waveforms.append(waveform)
            texts.append(text)
            used_voices.append(voice)
            rates.append(rate)
    return SpeechSet(np.stack(waveforms), texts, used_voices, rates)


def word_errors(reference, hypothesis):
    """The word-level edit distance (substitutions, deletions, insertions) between two strings."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1]


def word_error_rate(references, hypotheses):
    """Word errors summed over every utterance divided by the reference words."""
    errors = sum(word_errors(r, h) for r, h in zip(references, hypotheses))
    return errors / max(sum(len(r.split()) for r in references), 1)


def ids_to_text(ids, end_id=2):
    """Generated ids (start id first, then words, the end id, padding) to the words as text."""
    words = []
    for token in ids[1:]:
        if token == end_id or token == 0:
            break
        words.append(VOCABULARY[token])
    return " ".join(words)
