"""`BertMaskedLM`: a BERT backbone predicting masked tokens through its tied token embedding."""

from __future__ import annotations

import warnings

import keras
import numpy as np

from keras_models import losses
from keras_models.checks import CheckedModel
from keras_models.text import PreprocessorMixin
from keras_models.transformers.bert_backbone import BertBackbone, BertInputs
from keras_models.transformers.bert_layers import MaskedLMHead, OutputBias


def masked_lm_loss():
    """Cross-entropy of the masked tokens from logits, averaged over the slots in use: the
    `sample_weight` of `mask_tokens` (0 at unused slots) weights each slot and divides the sum."""
    return losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")


@keras.saving.register_keras_serializable(package="keras_models")
class BertMaskedLM(PreprocessorMixin, BertInputs, CheckedModel):
    """BERT's masked language model (Devlin et al., 2019, section 3.1, task 1) on a `BertBackbone`.

    Inputs: the backbone's `[token_ids, segment_ids, padding_mask]` with some tokens masked, then
    `mask_positions`, int32 `(batch, predictions)`, the steps to predict. Output: the logits of the
    original token at each of those steps, `(batch, predictions, vocabulary_size)`: the step's vector
    through a dense GELU layer and a layer normalization, then the transposed token table (tied
    embeddings) plus a bias per token. `keras_models.text.mask_tokens` (or
    `BertPreprocessor.masked_lm`) makes `(x, y, sample_weight)` for `fit`; `fit`, `evaluate` and
    `predict` check ids, segments, mask and positions first.

    Args:
        backbone: the `BertBackbone`.
        name: the model name; `None` for the backbone's name plus `"_masked_lm"`.
    """

    extra_inputs = ("mask_positions",)

    def __init__(self, backbone, name=None, **kwargs):
        if not isinstance(backbone, BertBackbone):
            raise ValueError(f"backbone must be a BertBackbone; got {type(backbone).__name__}.")
        name = backbone.name + "_masked_lm" if name is None else name
        mask_positions = keras.Input((None,), dtype="int32", name=name + "_mask_positions")
        inputs = [*backbone.inputs, mask_positions]
        sequence = backbone(backbone.inputs)["sequence_output"]  # (batch, steps, hidden_dim)
        head = MaskedLMHead(epsilon=backbone.layer_norm_epsilon,
                            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02), name=name + "_head")
        x = head(sequence, mask_positions)  # (batch, predictions, hidden_dim)
        logits = backbone.token_embedding(x, reverse=True)  # (batch, predictions, vocabulary_size)
        logits = OutputBias(name=name + "_output_bias")(logits)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.backbone = backbone

    def checked_inputs(self, x, what="x"):
        checked = super().checked_inputs(x, what)
        if checked is x or not isinstance(checked, list):
            return checked
        positions = np.asarray(checked[3])
        steps = checked[0].shape
        if positions.ndim != 2 or len(positions) != steps[0] or not np.issubdtype(positions.dtype, np.integer):
            raise ValueError(f"{what} mask_positions must be integer steps (batch, predictions) with the batch "
                             f"{steps[0]} of the token ids; got shape {positions.shape} and dtype {positions.dtype}.")
        if positions.size and (positions.min() < 0 or positions.max() >= steps[1]):
            raise ValueError(f"{what} mask_positions must lie in [0, {steps[1]}), the steps of the token ids; got "
                             f"positions from {positions.min()} to {positions.max()}.")
        return [*checked[:3], positions.astype(np.int32)]

    def fit(self, x=None, y=None, *args, **kwargs):
        with warnings.catch_warnings():
            # The pooler serves classifiers; the masked-LM loss does not reach it, as Keras warns.
            warnings.filterwarnings("ignore", message="Gradients do not exist for variables .*_pooled_dense")
            return super().fit(x, y, *args, **kwargs)

    def get_config(self):
        return self.with_preprocessor_config({
            "name": self.name, "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone)})

    @classmethod
    def from_config(cls, config):
        config, preprocessor = cls.split_preprocessor_config(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls.restore_preprocessor(cls(**config), preprocessor)
