"""`WhisperSpeechToText`: waveforms to text tokens: the log-mel spectrogram in the graph, a Whisper backbone
and tied next-token logits, trained by `fit` with teacher forcing and generating with cached
self-attention and precomputed cross-attention keys and values."""

from __future__ import annotations

import keras
import numpy as np

from keras_models import checks
from keras_models.checks import CheckedModel, as_array
from keras_models.layers.log_mel_spectrogram import LogMelSpectrogram
from keras_models.recurrent.seq2seq import END_ID, START_ID, teacher_forcing_pairs
from keras_models.sampling import check_sampling, decode, no_gradients
from keras_models.transformers.compiled_steps import CompiledSteps, checked_task_name
from keras_models.transformers.whisper_backbone import PADDING_ID

FAMILY = "transformer"
SAMPLE_RATE = 16000  # Hz, as Whisper's
HOP_LENGTH = 160  # samples between log-mel frames (10 ms)
N_FFT = 400  # samples per frame (25 ms)


def pad_waveforms(waveforms, num_samples, what="waveforms"):
    """Waveforms as float32 numpy `(batch, num_samples)`, each padded with silence (0) at the end.

    Args:
        waveforms: a 2-D array `(batch, samples)` or a list of 1-D waveforms of any lengths up to
            `num_samples`.
        num_samples: the model's input length.
        what: the argument's name in error messages.
    """
    rows = list(waveforms) if isinstance(waveforms, (list, tuple)) else None
    if rows is None:
        array = np.asarray(waveforms)
        if array.ndim != 2:
            raise ValueError(
                f"{what} must be 2-D (batch, samples) or a list of 1-D waveforms; got shape {array.shape}."
            )
        rows = list(array)
    if not rows:
        raise ValueError(f"{what} must hold at least one waveform.")
    padded = np.zeros((len(rows), num_samples), np.float32)
    for index, row in enumerate(rows):
        row = np.asarray(row)
        if row.ndim != 1 or not np.issubdtype(row.dtype, np.number):
            raise ValueError(
                f"{what}[{index}] must be a 1-D numeric waveform; got shape {row.shape}, dtype {row.dtype}."
            )
        if len(row) > num_samples:
            raise ValueError(
                f"{what}[{index}] has {len(row)} samples, more than the model's num_samples={num_samples} "
                f"({num_samples / SAMPLE_RATE:g} s at {SAMPLE_RATE} Hz)."
            )
        padded[index, :len(row)] = row
    checks.check_finite(padded, what)
    return padded


def speech_to_text_pairs(waveforms, target_ids, start_id=START_ID, end_id=END_ID):
    """`([waveforms, decoder_inputs], targets)` for training with teacher forcing.

    Each row of `target_ids` is a transcript's token ids padded with 0 at the end, holding neither the
    start nor the end id: the decoder reads `start_id` and the transcript and learns to give the
    transcript followed by `end_id` (as `keras_models.recurrent.teacher_forcing_pairs`).

    Returns:
        `([waveforms, decoder_inputs], targets)`: the waveforms as float32 (untouched, one row per
        target), the decoder arrays int32 `(batch, target_steps + 1)`.
    """
    waveforms = np.asarray(waveforms)
    if waveforms.ndim != 2 or not np.issubdtype(waveforms.dtype, np.floating):
        raise ValueError(
            f"waveforms must be a 2-D float array (batch, samples); got {waveforms.dtype} {waveforms.shape}."
        )
    checks.check_finite(waveforms, "waveforms")
    # The decoder's half of teacher forcing; the source column only carries the row count.
    (_, decoder_inputs), targets = teacher_forcing_pairs(np.zeros((len(waveforms), 1), np.int32), target_ids,
                                                         start_id=start_id, end_id=end_id)
    return [waveforms.astype(np.float32), decoder_inputs], targets


@keras.saving.register_keras_serializable(package="keras_models")
class WhisperSpeechToText(CompiledSteps, CheckedModel):
    """Speech to text on a `WhisperBackbone` (a functional `keras.Model`).

    Called on `[waveforms, decoder_input_ids]` (16 kHz float waveforms `(batch, num_samples)`, token
    ids `(batch, steps)`, 0 padding) it returns the logits of the next token at every decoder step,
    `(batch, steps, vocabulary_size)`: teacher forcing. The first layer, `LogMelSpectrogram`, computes
    Whisper's features in the graph (no weights), so the exported files take waveforms. Train with
    `fit(*speech_to_text_pairs(waveforms, targets))`; the loss leaves padded targets out.
    `num_samples` is `160 * max_encoder_sequence_length` (Whisper: 480,000, 30 s); pad shorter
    utterances with `pad_waveforms`.

    Generation follows the library's contract (`generation_start`, `generation_step`,
    `generation_source = "features"`, `generation_source_shape = (num_samples,)`, `stop_token_ids`).
    `generation_start` runs the log-mel features and the encoder once and keeps, as the state: every
    decoder block's cross-attention keys and values `(batch, 2, encoder_length, num_heads, head_dim)`,
    every block's self-attention cache `(batch, 2, max_length, num_heads, head_dim)` and the position
    of the next token, int32 `(batch,)`. A step embeds one token at its position, writes its keys and
    values into the caches with `keras.ops.slice_update` and attends to the positions written so far
    and to the whole encoder output.

    Args:
        backbone: the `WhisperBackbone`.
        start_id: the id the decoder starts from (never generated).
        end_id: the id that ends a generated sequence.
        name: the model name; `None` for the backbone's name plus `"_speech_to_text"`.
    """

    def __init__(self, backbone, start_id=START_ID, end_id=END_ID, name=None, **kwargs):
        from keras_models.transformers.whisper_backbone import WhisperBackbone

        name = checked_task_name(backbone, WhisperBackbone, start_id, end_id, name, "_speech_to_text")
        num_samples = HOP_LENGTH * backbone.max_encoder_sequence_length
        log_mel = LogMelSpectrogram(num_mels=backbone.num_mels, sample_rate=SAMPLE_RATE, n_fft=N_FFT,
                                    hop_length=HOP_LENGTH, name=name + "_log_mel")
        waveforms = keras.Input((num_samples,), name=name + "_waveforms")
        decoder_ids = keras.Input((None,), dtype="int32", name=name + "_decoder_input_ids")
        hidden = backbone([log_mel(waveforms), decoder_ids])  # (batch, steps, hidden_dim)
        logits = backbone.token_embedding(hidden, reverse=True)  # (batch, steps, vocabulary_size)
        super().__init__(inputs=[waveforms, decoder_ids], outputs=logits, name=name, **kwargs)
        self.backbone = backbone
        self.log_mel = log_mel
        self.start_id = int(start_id)
        self.end_id = int(end_id)

    @property
    def num_samples(self) -> int:
        """The waveform length the model reads: 160 samples per log-mel frame."""
        return HOP_LENGTH * self.backbone.max_encoder_sequence_length

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "start_id": self.start_id, "end_id": self.end_id}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    # -- checked entry points --------------------------------------------------------------------------

    def check_inputs(self, x, y):
        backbone = self.backbone
        named = [("y", y)]
        if isinstance(x, (list, tuple)) and len(x) == 2:
            waveforms = as_array(x[0])
            if waveforms is not None and (waveforms.ndim != 2 or waveforms.shape[1] != self.num_samples):
                raise ValueError(
                    f"x[0] (waveforms) must have shape (batch, {self.num_samples}) (pad shorter ones with "
                    f"pad_waveforms); got {waveforms.shape}."
                )
            named.append(("x[1] (decoder input ids)", x[1]))
        for what, ids in named:
            if as_array(ids) is not None:
                checks.check_token_ids(ids, backbone.vocabulary_size, what, size_name="vocabulary_size",
                                       max_steps=backbone.max_decoder_sequence_length,
                                       steps_name="max_decoder_sequence_length")

    # -- the generation contract shared by the library's sequence models (export reads it) -------------

    generation_source = "features"

    @property
    def generation_source_shape(self):
        return (self.num_samples,)

    @property
    def stop_token_ids(self):
        return (self.end_id,)

    def generation_start(self, batch_size, max_length, source=None):
        """Runs the log-mel features and the encoder on `source` (float waveforms `(batch_size,
        num_samples)`) and returns the flat state: each decoder block's cross-attention keys and values,
        each block's empty self-attention cache for `max_length` steps, and the position 0 of every row."""
        if source is None:
            raise ValueError(f"{self.name!r} transcribes speech: generation_start needs source= (waveforms).")
        backbone = self.backbone
        if isinstance(max_length, (int, np.integer)) and not 1 <= max_length <= backbone.max_decoder_sequence_length:
            raise ValueError(
                f"max_length must lie in [1, max_decoder_sequence_length={backbone.max_decoder_sequence_length}]; "
                f"got max_length={max_length!r}."
            )
        features = self.log_mel(keras.ops.convert_to_tensor(source, dtype="float32"))
        encoder_outputs = backbone.encode(features, training=False)  # (batch, encoder_length, hidden_dim)
        cross_caches = [block.cross_attention_cache(encoder_outputs) for block in backbone.decoder_blocks]
        cache = keras.ops.zeros((batch_size, 2, max_length, backbone.num_heads, backbone.head_dim),
                                dtype=self.compute_dtype)
        return [*cross_caches, *[cache for _ in backbone.decoder_blocks], keras.ops.zeros((batch_size,), dtype="int32")]

    def generation_step(self, tokens, state):
        """One decoder step: `tokens` int32 `(batch,)` and the flat `state` to the next token's logits
        `(batch, vocabulary_size)`, padding and `start_id` ruled out (-inf), and the new state. Stepping
        through decoder inputs gives the logits of the whole network."""
        backbone = self.backbone
        layers = backbone.num_layers
        cross_caches, caches = state[:layers], state[layers:2 * layers]
        positions = keras.ops.convert_to_tensor(state[-1], dtype="int32")
        index = positions[0]  # every row is at the same position
        tokens = keras.ops.convert_to_tensor(tokens, dtype="int32")
        x = backbone.token_embedding(keras.ops.expand_dims(tokens, 1))  # (batch, 1, hidden_dim)
        x = x + backbone.decoder_position_embedding(x, start_index=index)
        new_caches = []
        for block, cross_cache, cache in zip(backbone.decoder_blocks, cross_caches, caches):
            x, cache = block(x, cache=cache, cache_index=index, cross_cache=cross_cache, training=False)
            new_caches.append(cache)
        hidden = backbone.decoder_final_norm(x[:, 0])  # (batch, hidden_dim)
        logits = backbone.token_embedding(hidden, reverse=True)  # (batch, vocabulary_size)
        never = np.zeros(backbone.vocabulary_size, bool)
        never[[PADDING_ID, self.start_id]] = True
        logits = keras.ops.where(keras.ops.convert_to_tensor(never), -np.inf, logits)
        return logits, [*cross_caches, *new_caches, positions + 1]

    # `generation_step` compiled for this backend (one trace per shape), as GPT's.

    def generate(self, waveforms, max_length, sampler="greedy", temperature=1.0, top_k=None, top_p=None,
                 beam_width=4, stop_token_ids=None, seed=None):
        """Transcribes every waveform.

        Args:
            waveforms: 16 kHz float waveforms, `(batch, samples)` or a list of 1-D waveforms, each at
                most `num_samples` long (shorter ones are padded with silence).
            max_length: the length of the result, the start id included, at most
                `max_decoder_sequence_length`.
            sampler: `"greedy"`, `"beam"`, `"top_k"` or `"top_p"` (see `keras_models.sampling`).
            temperature: divides the logits (above 0).
            top_k: tokens `"top_k"` draws from.
            top_p: the nucleus mass `"top_p"` draws from, in (0, 1].
            beam_width: beams of `"beam"`.
            stop_token_ids: ids that end a row, whose rest is then 0; `None` for `(end_id,)`.
            seed: the same seed gives the same tokens.

        Returns:
            int32 numpy `(batch, max_length)`: `start_id`, then the generated ids; after a row's stop id
            (`end_id`) the rest of the row is padding (0).
        """
        check_sampling(sampler, temperature, top_k, top_p, beam_width, seed)
        limit = self.backbone.max_decoder_sequence_length
        if (not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool)
                or not 1 <= max_length <= limit):
            raise ValueError(
                f"max_length must be an integer from 1 to max_decoder_sequence_length={limit}; got "
                f"max_length={max_length!r}."
            )
        source = pad_waveforms(waveforms, self.num_samples)
        start = np.full((len(source), 1), self.start_id, np.int32)
        with no_gradients():
            state = self.generation_start(len(source), int(max_length), source)
            return decode(self._compiled_function("generation_step"), start, state, int(max_length),
                          sampler=sampler, temperature=temperature, top_k=top_k, top_p=top_p,
                          beam_width=beam_width, seed=seed,
                          stop_token_ids=self.stop_token_ids if stop_token_ids is None else stop_token_ids,
                          pad_id=PADDING_ID)
