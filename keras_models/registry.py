"""The model registry behind `keras_models.build` and `keras_models.list_models`.

Each family registers its builders with `register_model` when its module is imported. A builder returns
a compiled `keras.Model` or an unfitted estimator, as its family's entry in `keras_models.families`
says; the registry stores it with the family name and a one-line description so that users, the CLI and
the tour can discover what exists.

`import keras_models` imports every family module listed in `keras_models.families.FAMILIES`
(`_load_families`), so that every class of the library is registered with Keras and
`keras.saving.load_model(path)` works after a plain `import keras_models`. A family whose import fails
is reported by a `RuntimeWarning` and left out, instead of breaking every import.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import warnings
from typing import Callable

import keras

from keras_models.families import FAMILIES, get_family


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model name."""

    name: str
    family: str
    description: str
    builder: Callable

    def __str__(self):
        return f"{self.name} ({self.family}): {self.description}"


_REGISTRY: dict[str, ModelInfo] = {}
_FAILED_FAMILIES: dict[str, str] = {}  # module -> the error that stopped its import
_loaded = False


def register_model(name: str, *, family: str, description: str):
    """Decorator registering `builder` under `name`.

    Args:
        name: the public name users pass to `keras_models.build`; lowercase, unique.
        family: the family the model belongs to (`"cnn"`, `"gan"`, ...), one of
            `keras_models.families.FAMILIES`.
        description: one line shown by `list_models()` and `keras-models list`.
    """
    if not name or name != name.lower() or " " in name:
        raise ValueError(f"Model names are lowercase without spaces; got name={name!r}.")
    get_family(family)  # a family is declared in keras_models.families before it registers models

    def decorator(builder):
        existing = _REGISTRY.get(name)
        if existing is not None and existing.builder is not builder:
            raise ValueError(
                f"Model name {name!r} is already registered by family {existing.family!r}."
            )
        _REGISTRY[name] = ModelInfo(name, family, description, builder)
        return builder

    return decorator


def _load_families():
    """Imports every family module once; `keras_models/__init__.py` calls it, later calls do nothing."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in (family.module for family in FAMILIES.values()):
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001 - one broken family must not take the others down
            if isinstance(error, ModuleNotFoundError) and error.name == module:
                continue  # a family not installed in this build is simply absent
            _FAILED_FAMILIES[module] = f"{type(error).__name__}: {error}"
            warnings.warn(
                f"keras_models family {module} failed to import and is unavailable: "
                f"{_FAILED_FAMILIES[module]}",
                RuntimeWarning,
                stacklevel=2,
            )


def list_models(family: str | None = None) -> list[ModelInfo]:
    """Returns the registered models, sorted by family then name.

    Args:
        family: only models of this family; `None` for all.
    """
    _load_families()
    infos = sorted(_REGISTRY.values(), key=lambda info: (info.family, info.name))
    if family is not None:
        get_family(family)
        infos = [info for info in infos if info.family == family]
    return infos


def get_model_info(name: str) -> ModelInfo:
    """Returns the `ModelInfo` for `name`, or raises `ValueError` naming the closest names."""
    _load_families()
    if not isinstance(name, str):
        raise TypeError(f"Model name must be a string; got {type(name).__name__}.")
    info = _REGISTRY.get(name) or _REGISTRY.get(name.lower().replace("-", "_"))
    if info is None:
        close = difflib.get_close_matches(name.lower(), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Closest names: {', '.join(close)}." if close else ""
        if _FAILED_FAMILIES:
            hint += f" Families that failed to import: {sorted(_FAILED_FAMILIES)}."
        raise ValueError(
            f"Unknown model name {name!r}.{hint} Call keras_models.list_models() for all "
            f"{len(_REGISTRY)} names."
        )
    return info


def build(name: str, /, *, dtype=None, **config):
    """Builds the registered model `name`, passing `config` to its builder.

    What comes back depends on the family (`keras_models.families.FAMILIES`):

    - A `keras.Model` compiled with its loss, metrics and optimizer, ready for `fit`: the dense, cnn
      and gan families, and classical's `linear_svm` and `rff_svm`. These builders share `name` (the
      Keras model name and the prefix of every layer name), `compile` (`False` returns the model
      uncompiled) and `jit_compile` (`None` for the family's default on this backend and device, see
      `keras_models.default_jit_compile`; `True` or `False` to force it), and per family:
      dense `input_shape, num_classes, head`; cnn `input_shape, num_classes, head, include_top,
      pooling`; classical `input_shape, num_classes`; gan `image_shape, num_classes, latent_dim,
      pixel_range`.
    - An unfitted estimator with scikit-learn's conventions (`fit(X, y)` returns it fitted, learned
      values end in `_`, `sklearn.base.clone` works, `to_keras()` gives the fitted model as a
      `keras.Model` for export): the statistical family (shared: `fit_intercept`) and classical's
      `decision_tree`, `random_forest` and `svm` (shared: `task`, `"classification"` or
      `"regression"`, and scikit-learn's parameters).

    `name` is positional-only, so a builder's own `name=` argument (the Keras model name) passes through.

    `dtype` is the Keras dtype policy the model is built with, for the families that return a Keras
    model: `None` for the global policy (float32 unless changed), `"mixed_bfloat16"` for mixed precision
    on accelerators (bfloat16 computations, float32 variables), `"mixed_float16"` (Keras adds loss
    scaling at compile), or any name or `keras.DTypePolicy` that Keras knows. Classifier outputs stay
    float32 under a mixed policy. The exporters write the float32 model its variables define.

    Example:
        >>> model = keras_models.build("mlp", input_shape=(64,), num_classes=10)
        >>> model.fit(x, y)
        >>> logit = keras_models.build("logistic_regression").fit(X, y)
    """
    info = get_model_info(name)
    if dtype is None:
        return info.builder(**config)
    try:
        policy = keras.dtype_policies.get(dtype)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Unknown dtype {dtype!r} for {name!r}: pass a Keras dtype policy name such as "
                         f"'float32', 'mixed_bfloat16' or 'mixed_float16' ({error}).") from None
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = info.builder(**config)
    finally:
        keras.config.set_dtype_policy(previous)
    if not isinstance(model, keras.Model):
        raise ValueError(f"dtype applies to the models that are Keras models; {name!r} builds a "
                         f"{type(model).__name__}, an estimator that computes in float64 on the host.")
    return model
