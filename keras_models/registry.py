"""The model registry behind `keras_models.build` and `keras_models.list_models`.

Each family registers its builders with `register_model`. A builder is any callable returning a Keras
model (or a keras-models estimator); the registry stores it with the family name and a one-line
description so that users, the CLI and the tour can discover what exists.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import warnings
from typing import Callable

# Family modules imported lazily the first time the registry is read, so `import keras_models` stays
# cheap and a family that fails to import names itself in the error instead of breaking every import.
_FAMILY_MODULES = (
    "keras_models.dense",
    "keras_models.statistical",
    "keras_models.cnn",
    "keras_models.gan",
    "keras_models.classical",
)


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
        family: the family the model belongs to (`"cnn"`, `"gan"`, ...).
        description: one line shown by `list_models()` and `keras-models list`.
    """
    if not name or name != name.lower() or " " in name:
        raise ValueError(f"Model names are lowercase without spaces; got name={name!r}.")

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
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _FAMILY_MODULES:
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
        families = {info.family for info in infos}
        if family not in families:
            raise ValueError(f"Unknown family {family!r}; known families: {sorted(families)}.")
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


def build(name: str, /, **config):
    """Builds the registered model `name` with the builder's keyword arguments.

    `name` is positional-only, so a builder's own `name=` argument (the Keras model name) passes through.

    Example:
        >>> model = keras_models.build("mlp", input_shape=(64,), num_classes=10)
    """
    return get_model_info(name).builder(**config)
