"""The WordPiece tokenizer and BERT's preprocessor: training, round trips, the tokenizer.json file, pairs
and bad input."""

import json

import numpy as np
import pytest
import tokenizers

from keras_models.text import BertPreprocessor, WordPieceTokenizer, load_tokenizer, save_tokenizer


def _help_texts(count=40):
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)][:count]


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer.train(_help_texts(), vocabulary_size=800)


def test_trained_vocabulary_starts_with_the_reserved_tokens_and_holds_word_pieces(tokenizer):
    vocabulary = tokenizer.get_vocabulary()
    assert tokenizer.vocabulary_size == len(vocabulary) == 800
    assert vocabulary[:6] == ["<pad>", "<|endoftext|>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert (tokenizer.classification_id, tokenizer.separator_id, tokenizer.mask_id) == (3, 4, 5)
    assert any(token.startswith("##") for token in vocabulary) and "the" in vocabulary


def test_words_split_into_the_longest_pieces_from_the_left(tokenizer):
    ids = tokenizer.encode("The Tokenizer splits")
    pieces = [tokenizer.id_to_token(i) for i in ids]
    assert pieces[0] == "the"  # uncased
    assert len(pieces) > 3  # "tokenizer" and "splits" are not whole tokens of this small vocabulary
    words = [[pieces[0]], [pieces[1]]]  # a piece that continues a word starts with "##"
    for piece in pieces[2:]:
        (words[-1].append(piece) if piece.startswith("##") else words.append([piece]))
    assert ["".join(p.removeprefix("##") for p in word) for word in words] == ["the", "tokenizer", "splits"]


def test_ids_round_trip_through_text(tokenizer):
    checked = 0
    for text in _help_texts(79)[40:]:  # texts the vocabulary was not trained on
        ids = tokenizer.encode(text)
        if tokenizer.unknown_id not in ids:  # "<unk>" decodes as its five characters
            assert tokenizer.encode(tokenizer.decode(ids)) == ids
            checked += 1
    assert checked >= 20
    normalized = "the value of x , as a string ( with spaces ) !"
    assert tokenizer.decode(tokenizer.encode(normalized)) == normalized


def test_unseen_characters_are_unknown_and_special_text_is_text(tokenizer):
    ids = tokenizer.encode("the \u2603 [MASK]")
    assert ids[0] == tokenizer.token_to_id("the") and ids[1] == tokenizer.unknown_id
    assert tokenizer.mask_id not in ids  # "[MASK]" typed in a text is its characters


def test_cased_tokenizer_keeps_case():
    cased = WordPieceTokenizer.train(["Print print PRINT Print print"] * 3, vocabulary_size=60, lowercase=False)
    ids = cased.encode("Print print")
    assert ids[0] != ids[1] and cased.decode(ids) == "Print print"
    assert cased.get_config()["lowercase"] is False


def test_tokenizer_json_loads_in_tokenizers_and_back(tokenizer, tmp_path):
    path = save_tokenizer(tokenizer, tmp_path / "bert.tokenizer.json")
    text = "Return the lowest index in the string where substring sub is found."
    library = tokenizers.Tokenizer.from_file(str(path))
    assert library.encode(text, add_special_tokens=False).ids == tokenizer.encode(text)
    restored = WordPieceTokenizer.from_tokenizer_json(json.loads(path.read_text()))
    assert restored == tokenizer and restored.encode(text) == tokenizer.encode(text)
    loaded = load_tokenizer(path)  # the reader of every tokenizer file the exporters write
    assert isinstance(loaded, WordPieceTokenizer) and loaded == tokenizer
    assert WordPieceTokenizer.from_config(tokenizer.get_config()) == tokenizer


def test_special_tokens_follow_the_reserved_ones(tmp_path):
    trained = WordPieceTokenizer.train(_help_texts(5), vocabulary_size=200, special_tokens=["[Q]", "[A]"])
    assert trained.get_vocabulary()[6:8] == ["[Q]", "[A]"]
    path = save_tokenizer(trained, tmp_path / "t.json")
    assert WordPieceTokenizer.from_tokenizer_json(json.loads(path.read_text())).special_tokens == ["[Q]", "[A]"]


def test_preprocessor_builds_single_texts_and_pairs(tokenizer):
    preprocessor = BertPreprocessor(tokenizer, 12)
    token_ids, segment_ids, padding_mask = preprocessor(["the string"], ["the value of x"])
    the, string = tokenizer.encode("the string")
    value = tokenizer.encode("the value of x")
    np.testing.assert_array_equal(token_ids[0, :3 + len(value) + 2], [3, the, string, 4, *value, 4])
    np.testing.assert_array_equal(segment_ids[0], [0] * 4 + [1] * (len(value) + 1) + [0] * (7 - len(value)))
    np.testing.assert_array_equal(padding_mask[0], token_ids[0] != 0)
    single = preprocessor(["the string"])
    np.testing.assert_array_equal(single[0][0, :4], [3, the, string, 4])
    assert single[1].max() == 0 and single[0].dtype == np.int32


def test_long_pairs_are_cut_from_the_longer_text(tokenizer):
    preprocessor = BertPreprocessor(tokenizer, 10)
    long, short = "the " * 20, "x y"
    token_ids, segment_ids, _ = preprocessor([long], [short])
    assert (token_ids[0] != 0).all()  # exactly full: 10 steps
    assert list(token_ids[0, -3:]) == [*tokenizer.encode(short), 4] and segment_ids[0].sum() == 3
    assert list(token_ids[0, :7]) == [3, *tokenizer.encode("the " * 5), 4]  # 20 cut to 5


def test_bad_arguments_raise(tokenizer):
    with pytest.raises(ValueError, match="vocabulary_size must be an integer above 6"):
        WordPieceTokenizer.train(["a b"], vocabulary_size=6)
    with pytest.raises(ValueError, match="more distinct characters than vocabulary_size=8"):
        WordPieceTokenizer.train(["abcdefghij"], vocabulary_size=8)
    with pytest.raises(ValueError, match="lowercase must be True or False"):
        WordPieceTokenizer.train(["a b"], lowercase="yes")
    with pytest.raises(ValueError, match="vocabulary must start with the reserved tokens"):
        WordPieceTokenizer(["<pad>", "a"])
    with pytest.raises(ValueError, match="must be a word piece"):
        WordPieceTokenizer([*WordPieceTokenizer.reserved_tokens, "a b"])
    with pytest.raises(ValueError, match="tokenizer must be a WordPieceTokenizer"):
        BertPreprocessor("vocab.txt")
    with pytest.raises(ValueError, match="sequence_length must be an integer of at least 3"):
        BertPreprocessor(tokenizer, 2)
    with pytest.raises(ValueError, match="second_texts must hold one text per text: 2; got 1"):
        BertPreprocessor(tokenizer, 8)(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="texts\\[1\\] must be a string"):
        BertPreprocessor(tokenizer, 8)(["a", 3])
    with pytest.raises(ValueError, match="holds no WordPiece model"):
        WordPieceTokenizer.from_tokenizer_json({"model": {"type": "BPE"}})
