"""Token generation shared by every sequence model: greedy, top-k, top-p (nucleus) and beam search.

A model generates by handing `decode` its step function

    step(tokens, state) -> (logits, state)

which reads one token per sequence (`tokens`, an int32 numpy array `(batch,)`) and the state its
previous steps left (recurrent states, attention caches: any nest of tensors or numpy arrays whose
first axis is the batch, or `None`), and returns the logits of the next token `(batch, vocab)` and the
new state. `decode` feeds the prompt through `step` one token at a time, then chooses each next token
from the logits and feeds it back, so a model never re-reads its prefix. Choosing runs batch-wise in
numpy (float64) from one seeded `numpy.random.Generator`, so a seed gives the same tokens on every
Keras backend; the step itself stays the model's, written with `keras.ops`, and may be compiled.

Samplers:

- `"greedy"`: the most probable token (the first one on ties).
- `"top_k"`: a draw from the `top_k` most probable tokens, renormalised (Fan et al. 2018).
- `"top_p"`: a draw from the nucleus, the fewest most probable tokens whose probabilities add up to
  at least `top_p` (Holtzman et al. 2020). `top_p=1.0` draws from the whole distribution.
- `"beam"`: beam search keeping the `beam_width` sequences of highest total log-probability; the
  best of them is returned. Every sequence has the same length (`max_length`), so scores need no
  length normalisation.

`temperature` divides the logits before the probabilities are taken (sampling and beam search); as it
goes to 0, `top_k` and `top_p` sampling become greedy.
"""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np

SAMPLERS = ("greedy", "top_k", "top_p", "beam")


def no_gradients():
    """Generation records no gradients (PyTorch would keep a graph over every generated step)."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_sampling(sampler, temperature=1.0, top_k=None, top_p=None, beam_width=4, seed=None):
    """Raises a `ValueError` naming the first bad argument of a `generate` call.

    `top_k` is required by `sampler="top_k"` and refused by the others, `top_p` likewise; `beam_width`
    must be a positive integer whatever the sampler (it is read by `"beam"` only).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}; got sampler={sampler!r}.")
    valid = isinstance(temperature, (int, float, np.integer, np.floating)) and not isinstance(temperature, bool)
    if not valid or not math.isfinite(float(temperature)) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number above 0; got temperature={temperature!r}.")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None; got top_k={top_k!r}.")
    if top_p is not None:
        valid = isinstance(top_p, (int, float, np.integer, np.floating)) and not isinstance(top_p, bool)
        if not valid or not 0.0 < float(top_p) <= 1.0:
            raise ValueError(f"top_p must be a number in (0, 1] or None; got top_p={top_p!r}.")
    if sampler == "top_k" and top_k is None:
        raise ValueError("sampler='top_k' needs top_k, the number of most probable tokens to draw from.")
    if sampler == "top_p" and top_p is None:
        raise ValueError("sampler='top_p' needs top_p, the probability mass of the nucleus to draw from.")
    if top_k is not None and sampler != "top_k":
        raise ValueError(f"top_k={top_k!r} applies only to sampler='top_k'; got sampler={sampler!r}.")
    if top_p is not None and sampler != "top_p":
        raise ValueError(f"top_p={top_p!r} applies only to sampler='top_p'; got sampler={sampler!r}.")
    if not _is_int(beam_width) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive integer; got beam_width={beam_width!r}.")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None; got seed={seed!r}.")


def prompt_rows(token_ids, pad_id=0):
    """Prompts as `(tokens, lengths)`: int numpy `(batch, longest)` and each prompt's length.

    `token_ids` is a 2-D array (every prompt of one length) or a list of 1-D sequences of different
    lengths (ragged prompts), which are aligned on the left and filled with `pad_id` on the right.
    """
    if isinstance(token_ids, (list, tuple)) and token_ids and all(np.ndim(row) == 1 for row in token_ids):
        rows = [np.asarray(row) for row in token_ids]
        lengths = np.asarray([len(row) for row in rows], dtype=np.int64)
        if lengths.min() == 0:
            empty = np.flatnonzero(lengths == 0).tolist()
            raise ValueError(f"token_ids rows {empty} are empty; every prompt needs at least one token.")
        kinds = {row.dtype.kind for row in rows}
        if not kinds <= {"i", "u"}:
            raise ValueError(f"token_ids must hold integer token ids; got dtypes {sorted(str(r.dtype) for r in rows)}.")
        tokens = np.full((len(rows), int(lengths.max())), pad_id, dtype=np.int64)
        for index, row in enumerate(rows):
            tokens[index, :len(row)] = row
        return tokens, lengths
    tokens = np.asarray(token_ids)
    return tokens, np.full(tokens.shape[:1], tokens.shape[1] if tokens.ndim == 2 else 0, dtype=np.int64)


def _check_prompt(token_ids, max_length):
    tokens = np.asarray(token_ids)
    if tokens.ndim != 2 or 0 in tokens.shape:
        raise ValueError(f"token_ids must be a non-empty 2-D array (batch, steps); got shape {tokens.shape}.")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"token_ids must hold integer token ids; got dtype {tokens.dtype}.")
    if not _is_int(max_length) or max_length < tokens.shape[1]:
        raise ValueError(
            f"max_length counts the prompt too and must be an integer of at least the prompt length "
            f"{tokens.shape[1]}; got max_length={max_length!r}."
        )
    return tokens.astype(np.int32)


def _checked_logits(logits, batch):
    """The step's logits as float64 numpy `(batch, vocab)`; `-inf` marks a token that cannot come."""
    array = np.asarray(keras.ops.convert_to_numpy(logits), dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != batch or array.shape[1] < 1:
        raise ValueError(f"step must return logits of shape ({batch}, vocab); got shape {array.shape}.")
    if np.isnan(array).any() or np.isposinf(array).any():
        raise ValueError("step returned NaN or +inf logits.")
    if np.isneginf(array).all(axis=1).any():
        raise ValueError("step returned a row of logits that rules out every token (all -inf).")
    return array


def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _draw(probabilities, rng):
    """One index per row, drawn with the row's (unnormalised) probabilities; zero-probability entries
    are never drawn."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(len(probabilities)) * cumulative[:, -1]
    index = (cumulative <= u[:, None]).sum(axis=1)
    # `u` can round up to the total: fall back to the last token that has any probability.
    last_possible = probabilities.shape[1] - 1 - np.argmax(probabilities[:, ::-1] > 0, axis=1)
    return np.minimum(index, last_possible)


def _ranked(logits):
    """Token indices by decreasing logit, ties by increasing index."""
    return np.argsort(-logits, axis=1, kind="stable")


def top_k_probabilities(logits, top_k, temperature=1.0):
    """The distribution `sampler="top_k"` draws from: softmax of `logits / temperature` over the
    `top_k` highest logits of each row (exactly `top_k` tokens, ties to the lower index), zero elsewhere."""
    logits = np.asarray(logits, dtype=np.float64)
    if top_k > logits.shape[1]:
        raise ValueError(f"top_k={top_k} exceeds the vocabulary of {logits.shape[1]} tokens.")
    kept = np.full(logits.shape, -np.inf)
    best = _ranked(logits)[:, :top_k]
    np.put_along_axis(kept, best, np.take_along_axis(logits, best, axis=1) / temperature, axis=1)
    return np.exp(_log_softmax(kept))


def top_p_probabilities(logits, top_p, temperature=1.0):
    """The distribution `sampler="top_p"` draws from: softmax of `logits / temperature` restricted to
    the nucleus (a token is in it when the tokens ranked before it hold less than `top_p`)."""
    probabilities = np.exp(_log_softmax(np.asarray(logits, dtype=np.float64) / temperature))
    order = _ranked(probabilities)
    ranked = np.take_along_axis(probabilities, order, axis=1)
    before = np.cumsum(ranked, axis=1) - ranked  # mass of the tokens ranked above each one
    nucleus = np.zeros(probabilities.shape, dtype=bool)
    np.put_along_axis(nucleus, order, before < top_p, axis=1)
    kept = np.where(nucleus, probabilities, 0.0)
    return kept / kept.sum(axis=1, keepdims=True)


def _choose(logits, sampler, temperature, top_k, top_p, rng):
    if sampler == "greedy":
        return np.argmax(logits, axis=1)
    if sampler == "top_k":
        return _draw(top_k_probabilities(logits, top_k, temperature), rng)
    return _draw(top_p_probabilities(logits, top_p, temperature), rng)


def reorder_state(state, rows):
    """`state` with its batch rows taken in the order `rows` (numpy arrays stay numpy, tensors go
    through `keras.ops.take`); beam search uses it to follow the surviving beams."""
    if state is None:
        return None
    rows = np.asarray(rows, dtype=np.int32)
    tensor_rows = None

    def take(value):
        nonlocal tensor_rows
        if isinstance(value, np.ndarray):
            return value[rows]
        if tensor_rows is None:
            tensor_rows = keras.ops.convert_to_tensor(rows, dtype="int32")
        return keras.ops.take(value, tensor_rows, axis=0)

    return keras.tree.map_structure(take, state)


def _finished_rows(log_probabilities, finished, pad_id):
    """Log-probabilities `(rows, vocab)` where a finished row can only continue with `pad_id`, at no cost."""
    if not finished.any():
        return log_probabilities
    padding_only = np.full(log_probabilities.shape[1], -np.inf)
    padding_only[pad_id] = 0.0
    return np.where(finished[:, None], padding_only, log_probabilities)


def _beam_search(step, tokens, logits, state, max_length, beam_width, temperature, stop_token_ids, pad_id):
    batch, prompt_length = tokens.shape
    vocab = logits.shape[1]
    # Row b * beam_width + i holds beam i of sequence b. Only beam 0 is alive at first (the others
    # score -inf), so the first choices are distinct tokens and not beam_width copies of one.
    state = reorder_state(state, np.repeat(np.arange(batch), beam_width))
    logits = np.repeat(logits, beam_width, axis=0)
    scores = np.full((batch, beam_width), -np.inf)
    scores[:, 0] = 0.0
    history = np.repeat(tokens[:, None, :], beam_width, axis=1)  # (batch, beam, steps)
    finished = np.zeros((batch, beam_width), dtype=bool)
    for position in range(prompt_length, max_length):
        log_probabilities = _finished_rows(_log_softmax(logits / temperature), finished.reshape(-1), pad_id)
        log_probabilities = log_probabilities.reshape(batch, beam_width, vocab)
        candidates = (scores[:, :, None] + log_probabilities).reshape(batch, beam_width * vocab)
        best = _ranked(candidates)[:, :beam_width]  # (batch, beam)
        scores = np.take_along_axis(candidates, best, axis=1)
        beam, token = best // vocab, (best % vocab).astype(np.int32)
        history = np.concatenate([np.take_along_axis(history, beam[:, :, None], axis=1), token[:, :, None]], axis=2)
        finished = np.take_along_axis(finished, beam, axis=1) | np.isin(token, stop_token_ids)
        if finished.all():
            break
        if position + 1 < max_length:
            state = reorder_state(state, (np.arange(batch)[:, None] * beam_width + beam).reshape(-1))
            logits, state = step(token.reshape(-1), state)
            logits = _checked_logits(logits, batch * beam_width)
    best = history[np.arange(batch), np.argmax(scores, axis=1)]
    return _padded(best, max_length, pad_id)


def _padded(tokens, max_length, pad_id):
    """`tokens` `(batch, steps)` filled with `pad_id` on the right up to `max_length` steps."""
    filler = np.full((tokens.shape[0], max_length - tokens.shape[1]), pad_id, dtype=np.int32)
    return np.concatenate([tokens.astype(np.int32), filler], axis=1)


def _check_stop(stop_token_ids, pad_id):
    if not _is_int(pad_id) or pad_id < 0:
        raise ValueError(f"pad_id must be a non-negative integer; got pad_id={pad_id!r}.")
    if stop_token_ids is None:
        return np.zeros(0, dtype=np.int64)
    ids = list(stop_token_ids) if isinstance(stop_token_ids, (list, tuple, np.ndarray)) else None
    if ids is None or not all(_is_int(i) and i >= 0 for i in ids):
        raise ValueError(
            f"stop_token_ids must be a list or tuple of non-negative integer ids, or None; got {stop_token_ids!r}."
        )
    return np.asarray(ids, dtype=np.int64)


def decode(step, token_ids, state, max_length, *, sampler="greedy", temperature=1.0, top_k=None, top_p=None,
           beam_width=4, seed=None, stop_token_ids=None, pad_id=0, prefill=None, prompt_lengths=None):
    """Extends each prompt of `token_ids` to `max_length` tokens with `step` (see the module docstring).

    Args:
        step: `step(tokens, state) -> (logits, state)`; `tokens` int32 `(batch,)`, logits `(batch, vocab)`
            (a tensor or an array; `-inf` rules a token out), state any nest whose leaves have the
            batch first.
        token_ids: the prompts, integer `(batch, prompt_length)` with `prompt_length >= 1`; with
            `prompt_lengths`, rows aligned on the left and filled on the right past their lengths.
        state: the state before the first prompt token (zeros, or a model's conditioning).
        max_length: the length of the result, prompt included (at least the prompt length).
        sampler: `"greedy"`, `"top_k"`, `"top_p"` or `"beam"`.
        temperature: divides the logits (above 0).
        top_k: the number of tokens `"top_k"` draws from (required there, refused elsewhere).
        top_p: the nucleus mass `"top_p"` draws from, in (0, 1] (required there, refused elsewhere).
        beam_width: the beams `"beam"` keeps.
        seed: seeds the draws of `"top_k"` and `"top_p"`: the same seed gives the same tokens.
        stop_token_ids: ids that end a sequence: once a row generates one (the prompt does not count),
            the rest of the row is `pad_id`. With `"beam"`, a finished beam extends with `pad_id` at no
            cost. Generation ends early when every row has stopped.
        pad_id: fills the rows that stopped.
        prefill: `prefill(token_ids, state) -> (logits, state)`, reading the whole prompt at once and
            returning the logits after its last token (a transformer fills its cache in one pass); by
            default the prompt goes through `step` one token at a time.
        prompt_lengths: each row's prompt length (ragged prompts, from `prompt_rows`); `None` when every
            row's prompt is the whole of `token_ids`. The shortest prompt is read first (by `prefill`);
            from there on every row steps in lockstep, and a row still inside its prompt is fed its own
            next prompt token instead of a generated one. Not with `"beam"`.

    Returns:
        int32 numpy `(batch, max_length)`: the prompts followed by the generated tokens.
    """
    check_sampling(sampler, temperature, top_k, top_p, beam_width, seed)
    if not callable(step):
        raise ValueError(f"step must be callable as step(tokens, state) -> (logits, state); got {step!r}.")
    if prefill is not None and not callable(prefill):
        raise ValueError(f"prefill must be callable as prefill(token_ids, state) -> (logits, state); got {prefill!r}.")
    stop = _check_stop(stop_token_ids, pad_id)
    tokens = _check_prompt(token_ids, max_length)
    batch = tokens.shape[0]
    lengths = _check_lengths(prompt_lengths, tokens.shape, sampler)
    prompt_length = int(lengths.min())
    if max_length == prompt_length:
        return tokens.copy()
    if prefill is not None:
        logits, state = prefill(tokens[:, :prompt_length], state)
    else:
        for position in range(prompt_length):  # the prompt: its last logits choose the first new token
            logits, state = step(tokens[:, position], state)
    logits = _checked_logits(logits, batch)
    if sampler == "top_k" and top_k > logits.shape[1]:
        raise ValueError(f"top_k={top_k} exceeds the vocabulary of {logits.shape[1]} tokens.")
    if sampler == "beam":
        return _beam_search(step, tokens, logits, state, max_length, beam_width, float(temperature), stop, pad_id)
    rng = np.random.default_rng(seed)
    generated = []
    finished = np.zeros(batch, dtype=bool)
    for position in range(prompt_length, max_length):
        chosen = _choose(logits, sampler, float(temperature), top_k, top_p, rng).astype(np.int32)
        chosen = np.where(finished, np.int32(pad_id), chosen)
        if position < tokens.shape[1]:  # rows still reading their prompts take its next token
            inside = position < lengths
            chosen = np.where(inside, tokens[:, position], chosen)
            finished |= ~inside & np.isin(chosen, stop)
        else:
            finished |= np.isin(chosen, stop)
        generated.append(chosen)
        if finished.all():
            break
        if position + 1 < max_length:
            logits, state = step(chosen, state)
            logits = _checked_logits(logits, batch)
    return _padded(np.concatenate([tokens[:, :prompt_length], np.stack(generated, axis=1)], axis=1), max_length,
                   pad_id)


def _check_lengths(prompt_lengths, shape, sampler):
    """Each row's prompt length as int64 numpy `(batch,)`, from 1 to the width of `token_ids`."""
    if prompt_lengths is None:
        return np.full(shape[0], shape[1], dtype=np.int64)
    lengths = np.asarray(prompt_lengths)
    if lengths.shape != shape[:1] or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"prompt_lengths must be {shape[0]} integers, one per prompt; got {prompt_lengths!r}.")
    if lengths.min() < 1 or lengths.max() > shape[1]:
        raise ValueError(
            f"prompt_lengths must lie in [1, {shape[1]}] (the width of token_ids); got {lengths.tolist()}."
        )
    if sampler == "beam" and lengths.min() != lengths.max():
        raise ValueError("sampler='beam' needs prompts of one length; generate ragged prompts in groups of equal "
                         "length.")
    return lengths.astype(np.int64)
