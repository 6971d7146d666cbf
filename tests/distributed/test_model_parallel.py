"""The transformers' kernels shard over a "model" mesh axis as `transformer_layout_map` says, and a
training step gives the loss of the unsharded model (4 virtual CPU devices as a 2 x 2 mesh)."""

import json
import re
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from distributed_runs import run_devices  # noqa: E402

from keras_models import distributed  # noqa: E402
from keras_models.distributed.layouts import TRANSFORMER_LAYOUTS  # noqa: E402

DEFAULT = ("gpt_causal_lm",)
MORE = ("t5_seq2seq_lm", "bert_classifier", "vit_classifier", "whisper_speech_to_text")


def _expected_spec(path):
    matches = [axes for pattern, axes in TRANSFORMER_LAYOUTS if re.fullmatch(pattern, path)]
    assert len(matches) <= 1, f"{path} matches {len(matches)} layouts"
    return list(matches[0]) if matches else None


def _check(result, name):
    losses = result["losses"]
    np.testing.assert_allclose(losses["sharded"], losses["unsharded"], atol=1e-5, rtol=0, err_msg=name)
    assert losses["unsharded"][1] != losses["unsharded"][0], "the first step changed nothing"
    sharded = 0
    for path, spec in result["specs"].items():
        expected = _expected_spec(path)
        shape = result["shard_shapes"][path][0]
        if expected is None:
            assert set(spec) <= {None}, f"{name}: {path} should be replicated, is {spec}"
            continue
        assert spec == expected, f"{name}: {path} is laid out as {spec}, the map says {expected}"
        # The sharded axis holds half the values on each device of the model axis.
        axis = expected.index("model")
        full = result["full_shapes"][path]
        assert shape[axis] * 2 == full[axis], f"{name}: {path} shard {shape} of {full}"
        sharded += 1
    # Attention (query, key, value, output) and feed-forward (up, down) kernels of every block, embeddings.
    assert sharded >= 8, f"{name}: only {sharded} variables sharded"


def _run(names, tmp_path):
    run_devices("model_parallel", names, tmp_path, 4)
    return json.loads((tmp_path / "model_parallel.json").read_text())


def test_transformers_shard_as_the_layout_map_says_and_train_alike(tmp_path):
    results = _run(DEFAULT, tmp_path)
    for name in DEFAULT:
        _check(results[name], name)


@pytest.mark.slow
def test_every_transformer_shards_and_trains_alike(tmp_path):
    results = _run(MORE, tmp_path)
    for name in MORE:
        _check(results[name], name)


def test_layout_map_names_the_kernels_and_rejects_a_missing_axis():
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), ["cpu:0"])
    layout_map = distributed.transformer_layout_map(mesh)
    assert layout_map["gpt_backbone_block1/self_attention/query/kernel"].axes == (None, "model")
    assert layout_map["t5_backbone_decoder_block2/cross_attention/output/kernel"].axes == ("model", None)
    assert layout_map["gpt_backbone_block1/feed_forward/down/kernel"].axes == ("model", None)
    assert layout_map["bert_backbone_segment_embedding/embeddings"].axes == (None, "model")
    assert layout_map["gpt_backbone_block1/self_attention_norm/gamma"] is None
    assert layout_map["t5_backbone_encoder_relative_position_bias/embeddings"] is None
    with pytest.raises(ValueError, match="model_axis 'tensor'"):
        distributed.transformer_layout_map(mesh, model_axis="tensor")
    with pytest.raises(ValueError, match="model_devices must be a positive divisor"):
        distributed.transformer_model_parallel(3, devices=["cpu:0", "cpu:1"])
