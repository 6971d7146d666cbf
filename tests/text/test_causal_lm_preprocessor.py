"""CausalLMPreprocessor: training pairs, packed corpora, prompts and generated ids back to text."""

import json

import keras
import numpy as np
import pytest

from keras_models.text import BytePairTokenizer, CausalLMPreprocessor, CharacterTokenizer

CORPUS = ["The quick brown fox jumps over the lazy dog.", "Pack my box with five dozen liquor jugs.",
          "How vexingly quick daft zebras jump!", "Sphinx of black quartz, judge my vow."] * 5


@pytest.fixture(scope="module", params=["bpe", "characters"])
def tokenizer(request):
    if request.param == "bpe":
        return BytePairTokenizer.train(CORPUS, vocabulary_size=300)
    return CharacterTokenizer.train(CORPUS)


def test_training_pairs_are_shifted_and_framed_by_end_of_text(tokenizer):
    preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=12)
    texts = ["The fox.", "How vexingly quick daft zebras jump over the dog!"]
    x, y = preprocessor(texts)
    assert x.dtype == y.dtype == np.int32 and x.shape == y.shape == (2, 12)
    short = tokenizer.encode(texts[0])
    assert len(short) + 2 <= 13  # fits: <|endoftext|> ids <|endoftext|> then padding
    full = [1, *short, 1] + [0] * (13 - len(short) - 2)
    assert x[0].tolist() == full[:-1] and y[0].tolist() == full[1:]
    long = [1, *tokenizer.encode(texts[1]), 1]
    assert len(long) > 13  # cut: the start is kept and there is no padding
    assert x[1].tolist() == long[:12] and y[1].tolist() == long[1:13]
    single_x, single_y = preprocessor(texts[0])
    assert single_x.tolist() == [x[0].tolist()] and single_y.tolist() == [y[0].tolist()]


def test_pack_cuts_one_stream_into_windows(tokenizer):
    preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=8)
    stream = [1]
    for text in CORPUS[:4]:
        stream += [*tokenizer.encode(text), 1]
    x, y = preprocessor.pack(CORPUS[:4])
    assert x.shape == (-(-(len(stream) - 1) // 8), 8)
    assert x.reshape(-1)[:len(stream) - 1].tolist() == stream[:-1]
    assert y.reshape(-1)[:len(stream) - 1].tolist() == stream[1:]
    # Padding only after the end of the stream: no target is left there for the loss to read.
    assert not y.reshape(-1)[len(stream) - 1:].any() and not x.reshape(-1)[len(stream):].any()


def test_prompts_are_left_padded_and_outputs_stop_at_end_of_text(tokenizer):
    preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=16)
    prompts = preprocessor.generate_preprocess(["The quick brown", "A", ""])
    lengths = [1 + len(tokenizer.encode(text)) for text in ["The quick brown", "A", ""]]
    assert prompts.dtype == np.int32 and prompts.shape == (3, max(lengths))
    for row, length, text in zip(prompts, lengths, ["The quick brown", "A", ""]):
        start = len(row) - length
        assert not row[:start].any() and row[start] == 1
        assert row[start + 1:].tolist() == tokenizer.encode(text)
    cut = preprocessor.generate_preprocess("The quick brown", sequence_length=2)
    assert cut.tolist() == [tokenizer.encode("The quick brown")[-2:]]
    fox, dog = tokenizer.encode(" fox"), tokenizer.encode(" dog")
    first = [0, 0, 1, *tokenizer.encode("The"), *fox, 1, *dog]  # a left-padded prompt that ended
    second = [1, *tokenizer.encode("The"), *dog, *fox]  # padded on the right after the end
    generated = np.array([first, second + [0] * (len(first) - len(second))], dtype=np.int32)
    assert preprocessor.generate_postprocess(generated) == ["The fox", "The dog fox"]
    assert preprocessor.generate_postprocess(generated[0]) == "The fox"
    assert preprocessor.stop_token_ids == (1,)


def test_config_round_trip_through_json(tokenizer):
    preprocessor = CausalLMPreprocessor(tokenizer, sequence_length=10)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(preprocessor)))
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert isinstance(rebuilt, CausalLMPreprocessor) and rebuilt.sequence_length == 10
    assert rebuilt.tokenizer == tokenizer
    for a, b in zip(rebuilt(CORPUS[:3]), preprocessor(CORPUS[:3])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("call, message", [
    (lambda t: CausalLMPreprocessor("gpt2", 8), "tokenizer must be a BytePairTokenizer"),
    (lambda t: CausalLMPreprocessor(t, 0), "sequence_length=0"),
    (lambda t: CausalLMPreprocessor(t, None), "sequence_length=None"),
    (lambda t: CausalLMPreprocessor(t, 8)(["ok", 1]), r"texts\[1\] must be a string"),
    (lambda t: CausalLMPreprocessor(t, 8).pack(None), "got NoneType"),
    (lambda t: CausalLMPreprocessor(t, 8).generate_preprocess([]), "at least one prompt"),
    (lambda t: CausalLMPreprocessor(t, 8).generate_postprocess(np.ones((2, 3))), "dtype float64"),
    (lambda t: CausalLMPreprocessor(t, 8).generate_postprocess(np.ones((1, 2, 3), int)), r"shape \(1, 2, 3\)"),
])
def test_bad_input_is_named(tokenizer, call, message):
    with pytest.raises(ValueError, match=message):
        call(tokenizer)
