"""Generation export: what a device needs to generate tokens with a sequence model of the library.

A model that generates (the recurrent language model, the recurrent encoder-decoder, the decoder
transformers) exposes two functions written with `keras.ops`:

- `generation_start(batch_size, max_length, source=None)`: the flat list of state tensors before the
  first token (zeros, an encoder's outputs, a conditioning map, an empty KV cache), and
- `generation_step(tokens, state) -> (logits, state)`: one token in, the logits of the next one out,
  with ids the model never generates at -inf (TFLite writes the lowest float32 instead),

plus `generation_source` (`None`, `"token_ids"` or `"features"`: what `source` is) and
`stop_token_ids`. `generate(..., sampler="greedy")` is `keras_models.sampling.decode` over these two, so
files written from them reproduce it token for token.

Exported parts:

- `encode`, only for models with a source: input `source`; outputs `state_0`, `state_1`, ...
- `decode`: inputs `token_ids` `(batch,)` and `state_0`, `state_1`, ...; outputs `logits`
  `(batch, vocab)` and `state_0_out`, `state_1_out`, ... (the next call's states).

A model without a source starts from zero states (every model of the library starts that way; a KV
cache starts empty, its position at 0). TFLite holds every part as a signature of one file; ONNX holds
one graph per file, so `to_onnx(model, "lm.onnx", generation=True)` writes `lm.decode.onnx` (and
`lm.encode.onnx`). Both carry the same metadata (JSON under `keras_models.generation`): the parts,
`max_length`, `stop_token_ids`, `pad_id`, `start_token_ids` (what `generate` starts from when it is
given no prompt: an encoder-decoder's start token) and the source kind. `generate(path, ...)` reads it
and runs greedy decoding in LiteRT or onnxruntime.

Every state has a fixed shape for a given batch and `max_length` (the batch axis stays dynamic), and
the files hold no variables and no loops over them: a KV cache travels as explicit inputs and outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from export._common import ExportError, plain_message

PARTS = ("encode", "decode")
METADATA_KEY = "keras_models.generation"
_CONTRACT = ("generation_start", "generation_step", "generation_source", "stop_token_ids")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_generator(model, max_length):
    """Raises `ExportError` unless `model` follows the generation contract and `max_length` is usable."""
    missing = [name for name in _CONTRACT if not hasattr(model, name)]
    if missing:
        raise ExportError(
            f"generation=True exports models that generate tokens (rnn_language_model, rnn_seq2seq, "
            f"gpt_causal_lm, ...); {getattr(model, 'name', model)!r} lacks {missing}."
        )
    if not _is_int(max_length) or max_length < 1:
        raise ExportError(f"generation=True needs max_length, a positive integer; got max_length={max_length!r}.")
    if model.generation_source not in (None, "token_ids", "features"):
        raise ExportError(f"generation_source must be None, 'token_ids' or 'features'; got {model.generation_source!r}.")


def _source_shape(model):
    """The source's shape without the batch axis: the model's `generation_source_shape`, else the shape
    of its first input (encoder-decoders take the source first)."""
    shape = getattr(model, "generation_source_shape", None)
    if shape is None:
        shape = tuple(model.inputs[0].shape[1:])
    shape = tuple(shape)
    if any(d is None for d in shape):
        raise ExportError(
            f"The source of {model.name!r} has shape {('batch', *shape)} with an undefined axis; exported "
            "encoders run over a fixed length (recurrent layers are unrolled): build the model with a fixed "
            "source length (for rnn_seq2seq, source_length=N) and pad shorter sources."
        )
    return shape


@dataclasses.dataclass
class GenerationPart:
    """One traced part: a concrete `tf.function` returning a dict of named outputs."""

    name: str
    function: object
    concrete: object
    specs: list
    input_names: list[str]
    output_names: list[str]


def _source_spec(model, batch_size):
    import tensorflow as tf

    if model.generation_source is None:
        return None
    dtype = tf.int32 if model.generation_source == "token_ids" else tf.float32
    return tf.TensorSpec((batch_size, *_source_shape(model)), dtype, name="source")


def _probe_source(spec):
    if spec is None:
        return None
    shape = [1, *spec.shape[1:]]
    return np.ones(shape, spec.dtype.as_numpy_dtype)  # id 1: a real token for token sources


def generation_parts(model, max_length, batch_size=None) -> list[GenerationPart]:
    """Traces `encode` (models with a source) and `decode` over fixed state shapes.

    Raises:
        ExportError: the model does not follow the contract, a state changes shape across a step, the
            logits are not `(batch, vocab)`, or tracing fails (the message says why).
    """
    import keras
    import tensorflow as tf

    from export._common import unrolled_recurrent_layers

    check_generator(model, max_length)
    if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
        raise ExportError(f"batch_size must be a positive integer or None; got batch_size={batch_size!r}.")
    source_spec = _source_spec(model, batch_size)
    try:
        probe = model.generation_start(1, max_length, _probe_source(source_spec))
        probe = [keras.ops.convert_to_numpy(value) for value in probe]
        logits, stepped = model.generation_step(np.ones((1,), np.int32), [keras.ops.convert_to_tensor(v) for v in probe])
        logits = keras.ops.convert_to_numpy(logits)
        stepped = [keras.ops.convert_to_numpy(value) for value in stepped]
    except ExportError:
        raise
    except (ValueError, TypeError) as error:
        raise ExportError(f"Running one generation step of {model.name!r} failed: {plain_message(error)}") from error
    if logits.ndim != 2 or logits.shape[0] != 1:
        raise ExportError(f"generation_step of {model.name!r} must return logits (batch, vocab); got {logits.shape}.")
    if len(stepped) != len(probe) or any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(probe, stepped)):
        raise ExportError(
            f"generation_step of {model.name!r} must return states of the shapes and dtypes it takes; took "
            f"{[(a.shape, str(a.dtype)) for a in probe]}, returned {[(b.shape, str(b.dtype)) for b in stepped]}."
        )
    state_specs = [tf.TensorSpec((batch_size, *value.shape[1:]), tf.as_dtype(value.dtype), name=f"state_{index}")
                   for index, value in enumerate(probe)]
    state_names = [spec.name for spec in state_specs]
    parts = []

    if source_spec is not None:
        def encode(source):
            batch = tf.shape(source)[0]
            states = model.generation_start(batch, max_length, source)
            return {name: tf.identity(value) for name, value in zip(state_names, states)}

        with unrolled_recurrent_layers(model):
            function, concrete = _traced(model, "encode", encode, [source_spec])
        parts.append(GenerationPart("encode", function, concrete, [source_spec], ["source"], sorted(state_names)))

    token_spec = tf.TensorSpec((batch_size,), tf.int32, name="token_ids")

    def decode(tokens, *states):
        logits, new_states = model.generation_step(tokens, list(states))
        outputs = {"logits": tf.identity(logits)}
        outputs.update({f"{name}_out": tf.identity(value) for name, value in zip(state_names, new_states)})
        return outputs

    with unrolled_recurrent_layers(model):
        function, concrete = _traced(model, "decode", decode, [token_spec, *state_specs])
    # Outputs in the order a traced dict flattens them: sorted by name.
    parts.append(GenerationPart("decode", function, concrete, [token_spec, *state_specs], ["token_ids", *state_names],
                                sorted(["logits", *[f"{name}_out" for name in state_names]])))
    return parts


def _traced(model, part, function, specs):
    import tensorflow as tf

    function = tf.function(function, input_signature=specs, autograph=False)
    try:
        return function, function.get_concrete_function()
    except (ValueError, TypeError) as error:
        raise ExportError(f"Tracing the {part} part of {model.name!r} failed: {plain_message(error)}") from error


def metadata(model, max_length, parts) -> dict:
    """The facts `generate` needs, written into every exported file."""
    start = getattr(model, "start_token_ids", None)
    if start is None and getattr(model, "start_id", None) is not None:
        start = [model.start_id]  # an encoder-decoder decodes from its start token
    return {
        "format_version": 1,
        "model": model.name,
        "parts": [part.name for part in parts],
        "max_length": int(max_length),
        "source": model.generation_source,
        "stop_token_ids": [int(i) for i in model.stop_token_ids],
        "pad_id": int(getattr(model, "pad_id", 0)),
        "start_token_ids": None if start is None else [int(i) for i in start],
    }


def frozen_signatures(parts):
    """Every part frozen (variables as constants) and wrapped to return its named outputs, as a
    `tf.Module` ready for `tf.saved_model.save(module, folder, signatures=...)`."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    def named(frozen, names):
        def call(*args):
            return dict(zip(names, frozen(*args)))

        return call

    module, signatures = tf.Module(), {}
    for part in parts:
        call = named(convert_variables_to_constants_v2(part.concrete), list(part.concrete.structured_outputs))
        signatures[part.name] = tf.function(call, input_signature=part.specs, autograph=False).get_concrete_function()
        setattr(module, part.name, signatures[part.name])
    return module, signatures


@contextlib.contextmanager
def saved_parts(parts):
    """A temporary SavedModel folder holding every part as a signature (removed on exit)."""
    import tensorflow as tf

    module, signatures = frozen_signatures(parts)
    folder = Path(tempfile.mkdtemp(prefix="keras_models_generation_"))
    try:
        tf.saved_model.save(module, str(folder), signatures=signatures)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def with_tflite_metadata(content: bytes, meta: dict) -> bytes:
    """`content` with `meta` as JSON in the flatbuffer's metadata under `METADATA_KEY`."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_KEY, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def part_paths(path) -> dict[str, Path]:
    """The ONNX files of each part beside `path`: `<stem>.<part>.onnx`."""
    path = Path(path)
    return {part: path.with_name(f"{path.stem}.{part}{path.suffix}") for part in PARTS}


def signature_infos(signature_list: dict) -> str:
    """A one-line description of every part's inputs and outputs."""
    return "; ".join(f"{name}({', '.join(io['inputs'])}) -> {', '.join(io['outputs'])}"
                     for name, io in signature_list.items())


# --------------------------------------------------------------------------------------------------
# Running exported files


def _read_tflite_metadata(content: bytes, path) -> dict:
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if entry.Name().decode() == METADATA_KEY:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode())
    raise ExportError(
        f"{path} holds no generation metadata: write it with export.to_tflite(model, path, generation=True, "
        "max_length=N)."
    )


class _LiteRTParts:
    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        content = path.read_bytes()
        if bytes(content[4:8]) != b"TFL3":
            raise ExportError(f"{path} is not a TFLite file (no TFL3 identifier): corrupt or another format.")
        self.meta = _read_tflite_metadata(content, path)
        self.interpreter = Interpreter(model_content=content)
        signatures = self.interpreter.get_signature_list()
        missing = [part for part in self.meta["parts"] if part not in signatures]
        if missing:
            raise ExportError(f"{path} lacks the signatures {missing} its metadata lists.")
        self.runners = {part: self.interpreter.get_signature_runner(part) for part in self.meta["parts"]}
        self.state_names = [n for n in signatures["decode"]["inputs"] if n != "token_ids"]
        self.state_names.sort(key=lambda n: int(n.split("_")[1]))
        self.source_shape = None
        if "encode" in self.runners:
            signature = self.runners["encode"].get_input_details()["source"]["shape_signature"]
            self.source_shape = tuple(int(d) for d in signature)
        decode_inputs = self.runners["decode"].get_input_details()
        self.state_details = {name: (tuple(decode_inputs[name]["shape_signature"]), decode_inputs[name]["dtype"])
                              for name in self.state_names}

    def run(self, part, inputs: dict) -> dict:
        return self.runners[part](**inputs)


class _OnnxParts:
    def __init__(self, path: Path):
        import onnx
        import onnxruntime

        paths = part_paths(path)
        if not paths["decode"].exists():
            raise ExportError(
                f"{paths['decode']} does not exist: to_onnx(model, {str(path)!r}, generation=True) writes one "
                f"file per part beside the path ({paths['decode'].name}, and {paths['encode'].name} for models "
                "with a source)."
            )
        try:
            proto = onnx.load(str(paths["decode"]), load_external_data=False)
        except Exception as error:
            raise ExportError(f"{paths['decode']} is not a readable ONNX file: {error}") from error
        props = {p.key: p.value for p in proto.metadata_props}
        if METADATA_KEY not in props:
            raise ExportError(f"{paths['decode']} holds no generation metadata (metadata_props {METADATA_KEY!r}).")
        self.meta = json.loads(props[METADATA_KEY])
        self.sessions = {}
        for part in self.meta["parts"]:
            if not paths[part].exists():
                raise ExportError(f"{paths[part]} is missing: the {part} part of the exported model.")
            self.sessions[part] = onnxruntime.InferenceSession(str(paths[part]), providers=["CPUExecutionProvider"])
        self.source_shape = None
        if "encode" in self.sessions:
            self.source_shape = tuple(d if isinstance(d, int) else -1 for d in self.sessions["encode"].get_inputs()[0].shape)
        decode_inputs = {i.name: i for i in self.sessions["decode"].get_inputs()}
        self.state_names = sorted((n for n in decode_inputs if n != "token_ids"), key=lambda n: int(n.split("_")[1]))
        types = {"tensor(float)": np.float32, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
                 "tensor(float16)": np.float16}
        self.state_details = {n: (tuple(-1 if not isinstance(d, int) else d for d in decode_inputs[n].shape),
                                  types[decode_inputs[n].type]) for n in self.state_names}

    def run(self, part, inputs: dict) -> dict:
        session = self.sessions[part]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, inputs)))


def load_parts(path):
    """The runtime of an exported generation model: LiteRT for `.tflite`, onnxruntime for `.onnx`.

    Loads the file (or, for ONNX, the files of its parts) once; pass the result to `generate` in place of
    the path to generate many times without loading again.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be the path of an exported generation model, or what load_parts returned for "
                        f"one; got a {type(path).__name__}.")
    path = Path(path)
    if path.suffix == ".tflite":
        if not path.exists():
            raise ExportError(f"{path} does not exist.")
        return _LiteRTParts(path)
    if path.suffix == ".onnx":
        return _OnnxParts(path)
    raise ExportError(f"path must end in .tflite or .onnx; got {str(path)!r}.")


def generate(path, token_ids=None, max_length=None, source=None):
    """Greedy generation from an exported model, in LiteRT (`.tflite`) or onnxruntime (`.onnx`).

    Args:
        path: the path given to `to_tflite` / `to_onnx` with `generation=True`, or what
            `load_parts(path)` returned for it: a path loads the file into its runtime on every call; a
            loaded model is reused, as an application that generates many times should.
        token_ids: integer prompts `(batch, prompt_length)`; `None` starts every row from the model's
            start tokens (an encoder-decoder's start id), and needs `source` to know the batch.
        max_length: the length of the result, prompt included; at most (and by default) the
            `max_length` the file was exported with.
        source: the encoder's input, token ids `(batch, source_length)` or features `(batch, dim)`;
            required exactly when the model has a source.

    Returns:
        int32 numpy `(batch, max_length)`, equal token for token to the Keras model's
        `generate(..., sampler="greedy")`.
    """
    from keras_models.sampling import decode

    parts = path if isinstance(path, _LiteRTParts | _OnnxParts) else load_parts(path)
    meta = parts.meta
    if max_length is None:
        max_length = meta["max_length"]
    if not _is_int(max_length) or not 1 <= max_length <= meta["max_length"]:
        raise ValueError(
            f"max_length must be an integer from 1 to {meta['max_length']} (the length {path} was exported "
            f"with); got max_length={max_length!r}."
        )
    source_array = _checked_source(meta, source, parts)
    if token_ids is None:
        if meta["start_token_ids"] is None or source_array is None:
            raise ValueError("token_ids is required: this model has no start tokens of its own.")
        token_ids = np.tile(np.asarray(meta["start_token_ids"], np.int32), (len(source_array), 1))
    tokens = np.asarray(token_ids)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token_ids must be a 2-D integer array (batch, steps); got {tokens.dtype} {tokens.shape}.")
    if source_array is not None and len(source_array) != len(tokens):
        raise ValueError(f"source has {len(source_array)} rows and token_ids {len(tokens)}; give one source per prompt.")
    batch = len(tokens)
    if source_array is not None:
        started = parts.run("encode", {"source": source_array})
        state = [started[name] for name in parts.state_names]
    else:
        state = [np.zeros([batch if d in (None, -1) or i == 0 else d for i, d in enumerate(shape)], dtype)
                 for shape, dtype in (parts.state_details[name] for name in parts.state_names)]

    def step(step_tokens, states):
        inputs = {"token_ids": np.asarray(step_tokens, np.int32)}
        inputs.update(zip(parts.state_names, states))
        outputs = parts.run("decode", inputs)
        return outputs["logits"], [outputs[f"{name}_out"] for name in parts.state_names]

    return decode(step, tokens.astype(np.int32), state, max_length, stop_token_ids=meta["stop_token_ids"],
                  pad_id=meta["pad_id"])


def _checked_source(meta, source, parts):
    if meta["source"] is None:
        if source is not None:
            raise ValueError(f"{meta['model']!r} was exported without a source; got source=.")
        return None
    if source is None:
        raise ValueError(f"{meta['model']!r} generates from a source ({meta['source']}): pass source=.")
    array = np.asarray(source)
    if meta["source"] == "token_ids":
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"source must hold integer token ids; got dtype {array.dtype}.")
        array = array.astype(np.int32)
    else:
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise ValueError("source contains NaN or infinity.")
    expected = parts.source_shape
    fits = array.ndim == len(expected) and all(d in (-1, None) or d == a for d, a in zip(expected[1:], array.shape[1:]))
    if not fits:
        shape = ("batch", *("?" if d in (-1, None) else d for d in expected[1:]))
        raise ValueError(f"source must have shape {shape} (pad shorter sources with 0); got {array.shape}.")
    return array


__all__ = ["GenerationPart", "generate", "generation_parts", "load_parts", "metadata", "part_paths"]
