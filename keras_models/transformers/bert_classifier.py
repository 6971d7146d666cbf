"""`BertClassifier`: a BERT backbone with a classifier on its pooled `[CLS]` vector."""

from __future__ import annotations

import keras

from keras_models.checks import CheckedModel, check_rate
from keras_models.heads import check_head, check_num_classes, classifier_head
from keras_models.text import PreprocessorMixin
from keras_models.transformers.bert_backbone import BertBackbone, BertInputs


@keras.saving.register_keras_serializable(package="keras_models")
class BertClassifier(PreprocessorMixin, BertInputs, CheckedModel):
    """Sentence (or sentence-pair) classification on a `BertBackbone` (Devlin et al., 2019, section 4.1).

    The pooled output (the `[CLS]` vector through the pooler) goes through dropout and the library's
    classifier head: class probabilities `(batch, num_classes)` for `"softmax"`, independent
    probabilities for `"sigmoid"`, values for `"linear"`. Inputs are the backbone's
    `[token_ids, segment_ids, padding_mask]` (`BertPreprocessor` makes them from texts); `fit`,
    `evaluate` and `predict` also take token ids alone or a dict by input name, and check ids,
    segments, mask and labels first.

    Args:
        backbone: the `BertBackbone`, pretrained or not.
        num_classes: classes (output units).
        head: `"softmax"`, `"sigmoid"` or `"linear"`.
        dropout: dropout rate before the head; `None` for the backbone's.
        name: the model name; `None` for the backbone's name plus `"_classifier"`.
    """

    def __init__(self, backbone, num_classes=2, head="softmax", dropout=None, name=None, **kwargs):
        if not isinstance(backbone, BertBackbone):
            raise ValueError(f"backbone must be a BertBackbone; got {type(backbone).__name__}.")
        check_head(head)
        check_num_classes(num_classes, head)
        dropout = backbone.dropout if dropout is None else check_rate(dropout, "dropout")
        name = backbone.name + "_classifier" if name is None else name
        inputs = backbone.inputs
        pooled = backbone(inputs)["pooled_output"]  # (batch, hidden_dim)
        pooled = keras.layers.Dropout(dropout, name=name + "_dropout")(pooled)
        outputs = classifier_head(pooled, num_classes, head, name)  # (batch, num_classes)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.head = head
        self.classifier_dropout = float(dropout)

    def get_config(self):
        return self.with_preprocessor_config({
            "name": self.name, "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes, "head": self.head, "dropout": self.classifier_dropout})

    @classmethod
    def from_config(cls, config):
        config, preprocessor = cls.split_preprocessor_config(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls.restore_preprocessor(cls(**config), preprocessor)
