"""The decoder loop every sequence model shares (`keras_models.sampling`), on numpy step functions
whose right answers are computed here independently: brute-force argmax paths, exhaustive searches,
nuclei and top-k sets, and the frequencies of many draws."""

import itertools

import numpy as np
import pytest

from keras_models import sampling

VOCAB = 7


class ToyRNN:
    """A small numpy recurrent step: `h = tanh(E[token] + W h)`, `logits = 3 * h V`. Records the logits
    of every call, so a test can check each chosen token against the logits it was chosen from."""

    def __init__(self, seed=0, vocab=VOCAB, width=5):
        rng = np.random.default_rng(seed)
        self.embedding = rng.normal(size=(vocab, width))
        self.recurrent = rng.normal(size=(width, width)) / np.sqrt(width)
        self.output = rng.normal(size=(width, vocab))
        self.width = width
        self.calls = []

    def initial(self, batch):
        return np.zeros((batch, self.width))

    def __call__(self, tokens, state):
        assert tokens.dtype == np.int32 and tokens.ndim == 1
        state = np.tanh(self.embedding[tokens] + state @ self.recurrent)
        logits = 3.0 * state @ self.output
        self.calls.append(logits)
        return logits, state

    def log_probability(self, sequence, prompt_length):
        """The total log-probability of the tokens of `sequence` after the prompt (one sequence)."""
        state, total = self.initial(1), 0.0
        for position in range(len(sequence) - 1):
            logits, state = self(np.array([sequence[position]], np.int32), state)
            if position + 1 >= prompt_length:
                shifted = logits[0] - logits[0].max()
                total += shifted[sequence[position + 1]] - np.log(np.exp(shifted).sum())
        return total


def _prompts(batch=4, length=3, seed=1):
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, length)).astype(np.int32)


def _decode(model, prompts, max_length, **kwargs):
    return sampling.decode(model, prompts, model.initial(len(prompts)), max_length, **kwargs)


def _chosen_from(model, prompts, result):
    """Pairs (logits, chosen token) for every generated position."""
    length = prompts.shape[1]
    for position in range(length, result.shape[1]):
        yield model.calls[position - 1], result[:, position]


def test_greedy_is_the_argmax_path_of_a_brute_force_reference():
    model = ToyRNN()
    prompts = _prompts()
    result = _decode(model, prompts, 12)
    assert result.shape == (4, 12) and result.dtype == np.int32
    np.testing.assert_array_equal(result[:, :3], prompts)
    reference = ToyRNN()  # same weights, stepped one sequence at a time with Python loops
    for row, prompt in enumerate(prompts):
        sequence, state = list(prompt), reference.initial(1)
        for token in prompt[:-1]:
            _, state = reference(np.array([token], np.int32), state)
        while len(sequence) < 12:
            logits, state = reference(np.array([sequence[-1]], np.int32), state)
            sequence.append(int(np.argmax(logits[0])))
        assert result[row].tolist() == sequence


def test_prompt_of_max_length_is_returned_unchanged_without_steps():
    model = ToyRNN()
    prompts = _prompts()
    np.testing.assert_array_equal(_decode(model, prompts, 3), prompts)
    assert model.calls == []


@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_top_k_never_emits_a_token_outside_the_top_k(top_k):
    model = ToyRNN()
    prompts = _prompts(batch=16)
    result = _decode(model, prompts, 30, sampler="top_k", top_k=top_k, seed=3)
    for logits, chosen in _chosen_from(model, prompts, result):
        ranks = (logits > logits[np.arange(len(chosen)), chosen][:, None]).sum(axis=1)
        assert ranks.max() < top_k
    if top_k > 1:  # not greedy in disguise: some draw is not the most probable token
        assert any((logits.argmax(axis=1) != chosen).any() for logits, chosen in _chosen_from(model, prompts, result))


@pytest.mark.parametrize("top_p", [0.3, 0.8])
def test_top_p_never_emits_a_token_outside_the_nucleus(top_p):
    model = ToyRNN()
    prompts = _prompts(batch=16)
    result = _decode(model, prompts, 30, sampler="top_p", top_p=top_p, seed=4)
    for logits, chosen in _chosen_from(model, prompts, result):
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        for row, token in enumerate(chosen):
            # In the nucleus: the tokens more probable than it hold less than top_p.
            above = probabilities[row][probabilities[row] > probabilities[row, token]].sum()
            assert above < top_p


def test_samplers_draw_with_the_stated_probabilities():
    logits = np.log(np.array([0.05, 0.4, 0.1, 0.3, 0.15]))

    def constant(tokens, state):
        return np.tile(logits, (len(tokens), 1)), state

    prompts = np.ones((20000, 1), np.int32)
    top_k = sampling.decode(constant, prompts, None, 2, sampler="top_k", top_k=3, seed=0)[:, 1]
    top_p = sampling.decode(constant, prompts, None, 2, sampler="top_p", top_p=0.75, seed=0)[:, 1]
    hot = sampling.decode(constant, prompts, None, 2, sampler="top_k", top_k=5, temperature=2.0, seed=0)[:, 1]
    # top 3: 0.4, 0.3, 0.15 renormalised; nucleus 0.75: 0.4 + 0.3 holds 0.7 < 0.75, so 0.15 joins.
    expected_k = np.array([0, 0.4, 0, 0.3, 0.15]) / 0.85
    tempered = np.sqrt(np.array([0.05, 0.4, 0.1, 0.3, 0.15]))
    for draws, expected in ((top_k, expected_k), (top_p, expected_k), (hot, tempered / tempered.sum())):
        frequencies = np.bincount(draws, minlength=5) / len(draws)
        np.testing.assert_allclose(frequencies, expected, atol=0.015)
        assert np.all(frequencies[expected == 0] == 0)


def test_temperature_towards_zero_is_greedy():
    prompts = _prompts(batch=8)
    greedy = _decode(ToyRNN(), prompts, 15)
    cold_k = _decode(ToyRNN(), prompts, 15, sampler="top_k", top_k=VOCAB, temperature=1e-6, seed=5)
    cold_p = _decode(ToyRNN(), prompts, 15, sampler="top_p", top_p=1.0, temperature=1e-6, seed=6)
    np.testing.assert_array_equal(cold_k, greedy)
    np.testing.assert_array_equal(cold_p, greedy)


def test_seeds_reproduce_and_differ():
    prompts = _prompts(batch=8)
    first = _decode(ToyRNN(), prompts, 20, sampler="top_p", top_p=0.95, temperature=1.5, seed=11)
    again = _decode(ToyRNN(), prompts, 20, sampler="top_p", top_p=0.95, temperature=1.5, seed=11)
    other = _decode(ToyRNN(), prompts, 20, sampler="top_p", top_p=0.95, temperature=1.5, seed=12)
    np.testing.assert_array_equal(first, again)
    assert (first != other).mean() > 0.2


def test_beam_of_width_one_is_greedy():
    prompts = _prompts(batch=6)
    np.testing.assert_array_equal(_decode(ToyRNN(), prompts, 14, sampler="beam", beam_width=1),
                                  _decode(ToyRNN(), prompts, 14))


def test_wide_beam_finds_the_best_sequence_of_an_exhaustive_search():
    # Beam search keeping at least vocab ** (new tokens - 1) beams is exact: it must return the
    # highest-scoring continuation of all vocab ** 3, which also checks that states follow their beams.
    vocab, prompt = 4, np.array([[1, 2], [3, 0]], np.int32)
    model = ToyRNN(seed=2, vocab=vocab)
    result = sampling.decode(model, prompt, model.initial(2), 5, sampler="beam", beam_width=vocab ** 2)
    scorer = ToyRNN(seed=2, vocab=vocab)
    for row in range(2):
        scores = {tail: scorer.log_probability([*prompt[row], *tail], 2)
                  for tail in itertools.product(range(vocab), repeat=3)}
        assert tuple(result[row, 2:]) == max(scores, key=scores.get)


def test_beam_search_escapes_the_trap_greedy_falls_into():
    # After token 1 the first choice is token 2 (0.6) but every continuation of it is uncertain (best
    # 0.34); token 3 (0.4) is followed by token 4 with probability 0.97. Greedy: 0.6 * 0.34 = 0.20;
    # the best sequence: 0.4 * 0.97 = 0.39.
    table = {1: [0.0, 0.0, 0.6, 0.4, 0.0], 2: [0.0, 0.34, 0.33, 0.0, 0.33], 3: [0.0, 0.01, 0.01, 0.01, 0.97],
             4: [0.0, 0.25, 0.25, 0.25, 0.25]}

    def step(tokens, state):
        with np.errstate(divide="ignore"):
            return np.log(np.array([table[int(t)] for t in tokens])), state

    def probability(sequence):
        return np.prod([table[a][b] for a, b in zip(sequence[:-1], sequence[1:])])

    prompt = np.array([[1]], np.int32)
    greedy = sampling.decode(step, prompt, None, 3)[0]
    beam = sampling.decode(step, prompt, None, 3, sampler="beam", beam_width=2)[0]
    assert greedy.tolist() == [1, 2, 1]
    assert beam.tolist() == [1, 3, 4]
    assert probability(beam) == pytest.approx(0.388) and probability(greedy) == pytest.approx(0.204)


def test_ruled_out_tokens_are_never_chosen():
    def step(tokens, state):
        logits = np.zeros((len(tokens), 4))
        logits[:, 2] = 5.0
        logits[:, 0] = -np.inf
        return logits, state

    prompts = np.ones((500, 1), np.int32)
    for kwargs in ({"sampler": "top_p", "top_p": 1.0, "temperature": 50.0}, {"sampler": "top_k", "top_k": 4},
                   {"sampler": "beam", "beam_width": 4}):
        result = sampling.decode(step, prompts[:50] if kwargs["sampler"] == "beam" else prompts, None, 4,
                                 seed=0, **kwargs)
        assert not (result[:, 1:] == 0).any()


def _stopping_reference(model, prompts, max_length, stop, pad_id):
    """Greedy decoding written out row by row: argmax until a stop id, then `pad_id`."""
    rows = []
    for prompt in prompts:
        state, sequence = model.initial(1), list(prompt)
        for token in prompt:
            logits, state = model(np.array([token], np.int32), state)
        while len(sequence) < max_length:
            token = int(np.argmax(logits[0]))
            sequence.append(token)
            if token in stop:
                break
            logits, state = model(np.array([token], np.int32), state)
        rows.append(sequence + [pad_id] * (max_length - len(sequence)))
    return np.array(rows)


def test_greedy_rows_stop_at_a_stop_id_and_are_padded_after_it():
    prompts, stop = _prompts(batch=8), [3, 5]
    result = _decode(ToyRNN(), prompts, 16, stop_token_ids=stop, pad_id=6)
    expected = _stopping_reference(ToyRNN(), prompts, 16, stop, 6)
    np.testing.assert_array_equal(result, expected)
    stopped = [row for row in expected if np.isin(row[3:], stop).any()]
    assert stopped and any(row[-1] == 6 for row in stopped)  # the case is exercised, not vacuous


def test_generation_ends_early_when_every_row_stopped():
    calls = []

    def step(tokens, state):
        calls.append(tokens.copy())
        logits = np.zeros((len(tokens), 4))
        logits[:, 2] = 1.0  # always the stop id
        return logits, state

    result = sampling.decode(step, np.ones((3, 2), np.int32), None, 10, stop_token_ids=(2,))
    np.testing.assert_array_equal(result, [[1, 1, 2] + [0] * 7] * 3)
    assert len(calls) == 2  # the prompt only: no step after every row has stopped


def test_a_finished_beam_keeps_its_score_and_is_padded():
    # After token 1: stop (2) with 0.5, or token 3 with 0.5 followed by certain-looking but costly
    # steps (each 0.6). Stopping scores 0.5; continuing scores 0.5 * 0.6 ** k: the stopped beam wins.
    table = {1: [0.0, 0.0, 0.5, 0.5], 3: [0.0, 0.0, 0.4, 0.6]}

    def step(tokens, state):
        with np.errstate(divide="ignore"):
            return np.log(np.array([table.get(int(t), table[3]) for t in tokens])), state

    result = sampling.decode(step, np.array([[1]], np.int32), None, 6, sampler="beam", beam_width=3,
                             stop_token_ids=[2])
    assert result.tolist() == [[1, 2, 0, 0, 0, 0]]


def test_prefill_replaces_the_prompt_steps_and_gives_the_same_tokens():
    prompts = _prompts(batch=5, length=4)
    reference = _decode(ToyRNN(), prompts, 12)
    model, prefills = ToyRNN(), []

    def prefill(tokens, state):
        prefills.append(tokens.copy())
        for position in range(tokens.shape[1]):
            logits, state = model(tokens[:, position], state)
        return logits, state

    result = sampling.decode(model, prompts, model.initial(5), 12, prefill=prefill)
    np.testing.assert_array_equal(result, reference)
    assert len(prefills) == 1 and np.array_equal(prefills[0], prompts)


def test_ragged_prompts_generate_what_each_prompt_generates_alone():
    rows = [[4, 1], [2, 6, 0, 3, 5], [1, 1, 2]]
    tokens, lengths = sampling.prompt_rows([np.asarray(row, np.int32) for row in rows], pad_id=0)
    assert tokens.tolist() == [[4, 1, 0, 0, 0], [2, 6, 0, 3, 5], [1, 1, 2, 0, 0]] and lengths.tolist() == [2, 5, 3]
    model, prefills = ToyRNN(), []

    def prefill(prompt, state):
        prefills.append(prompt.copy())
        for position in range(prompt.shape[1]):
            logits, state = model(prompt[:, position], state)
        return logits, state

    for kwargs in ({}, {"sampler": "top_k", "top_k": 3, "seed": 4}):
        result = sampling.decode(model, tokens, model.initial(3), 11, prompt_lengths=lengths, prefill=prefill, **kwargs)
        assert prefills[-1].shape == (3, 2)  # the shortest prompt is read in one pass
        for row, prompt in zip(result, rows):
            assert row[:len(prompt)].tolist() == prompt
        if not kwargs:  # greedy: each row equals its prompt decoded alone
            for row, prompt in zip(result, rows):
                alone = _decode(ToyRNN(), np.asarray([prompt], np.int32), 11)[0]
                np.testing.assert_array_equal(row, alone)
    with pytest.raises(ValueError, match="beam.*one length"):
        sampling.decode(model, tokens, model.initial(3), 11, prompt_lengths=lengths, sampler="beam")
    with pytest.raises(ValueError, match=r"prompt_lengths must lie in \[1, 5\]"):
        sampling.decode(model, tokens, model.initial(3), 11, prompt_lengths=[2, 6, 3])
    with pytest.raises(ValueError, match="prompt_lengths must be 3 integers"):
        sampling.decode(model, tokens, model.initial(3), 11, prompt_lengths=[2, 5])
    with pytest.raises(ValueError, match="integer token ids"):
        sampling.prompt_rows([np.array([1.5]), np.array([1, 2])])


@pytest.mark.parametrize("kwargs, message", [
    ({"sampler": "random"}, "sampler must be one of"),
    ({"stop_token_ids": 3}, "stop_token_ids must be a list or tuple of non-negative integer ids, or None; got 3"),
    ({"stop_token_ids": [1, -2]}, "stop_token_ids must be"),
    ({"pad_id": -1}, "pad_id must be a non-negative integer; got pad_id=-1"),
    ({"prefill": 5}, "prefill must be callable"),
    ({"temperature": 0.0}, "temperature must be a finite number above 0; got temperature=0.0"),
    ({"temperature": float("nan")}, "temperature must be"),
    ({"sampler": "top_k"}, "sampler='top_k' needs top_k"),
    ({"sampler": "top_k", "top_k": 0}, "top_k must be a positive integer or None; got top_k=0"),
    ({"sampler": "top_k", "top_k": 2.5}, "top_k must be a positive integer"),
    ({"sampler": "top_k", "top_k": VOCAB + 1}, f"top_k={VOCAB + 1} exceeds the vocabulary of {VOCAB} tokens"),
    ({"sampler": "top_p"}, "sampler='top_p' needs top_p"),
    ({"sampler": "top_p", "top_p": 0.0}, r"top_p must be a number in \(0, 1\] or None; got top_p=0.0"),
    ({"sampler": "top_p", "top_p": 1.5}, "top_p must be a number in"),
    ({"top_k": 3}, "top_k=3 applies only to sampler='top_k'; got sampler='greedy'"),
    ({"sampler": "beam", "top_p": 0.9}, "top_p=0.9 applies only to sampler='top_p'"),
    ({"sampler": "beam", "beam_width": 0}, "beam_width must be a positive integer; got beam_width=0"),
    ({"seed": -1}, "seed must be a non-negative integer or None; got seed=-1"),
    ({"seed": 1.5}, "seed must be"),
    ({"max_length": 2}, "at least the prompt length 3; got max_length=2"),
    ({"max_length": 5.0}, "max_length"),
    ({"token_ids": np.ones(3, np.int32)}, r"token_ids must be a non-empty 2-D array \(batch, steps\); got shape \(3,"),
    ({"token_ids": np.ones((2, 3)) * 1.5}, "token_ids must hold integer token ids; got dtype float64"),
    ({"step": "not a function"}, "step must be callable"),
])
def test_bad_arguments_raise(kwargs, message):
    model = ToyRNN()
    arguments = {"step": model, "token_ids": _prompts(batch=2), "state": model.initial(2), "max_length": 6, **kwargs}
    with pytest.raises(ValueError, match=message):
        sampling.decode(arguments.pop("step"), arguments.pop("token_ids"), arguments.pop("state"),
                        arguments.pop("max_length"), **arguments)


@pytest.mark.parametrize("logits, message", [
    (np.zeros((2, 3, 1)), r"step must return logits of shape \(2, vocab\); got shape \(2, 3, 1\)"),
    (np.zeros((3, VOCAB)), r"shape \(2, vocab\)"),
    (np.full((2, VOCAB), np.nan), "NaN or \\+inf logits"),
    (np.full((2, VOCAB), -np.inf), "rules out every token"),
])
def test_bad_step_outputs_raise(logits, message):
    with pytest.raises(ValueError, match=message):
        sampling.decode(lambda tokens, state: (logits, state), _prompts(batch=2), None, 5)
