"""Configurations as data: every transformer model resolves its configuration from a preset the same
way (`resolve_config`), and its backbone writes that configuration back (`ConfigFromAttributes`)."""

from __future__ import annotations


def resolve_config(model: str, preset, presets: dict, default: dict, overrides: dict) -> dict:
    """The configuration of `preset` with `overrides` applied, unchecked.

    `None` for `preset` is `default` (a small configuration); a preset's entry is laid over `default`,
    so a preset names only what differs. Arguments in `overrides` that are not `None` replace the
    values; an argument `default` does not know is refused, naming `model`.
    """
    if preset is not None and not (isinstance(preset, str) and preset in presets):
        raise ValueError(f"preset must be None or one of {sorted(presets)}; got preset={preset!r}.")
    unknown = sorted(set(overrides) - set(default))
    if unknown:
        raise ValueError(f"Unknown {model} configuration arguments {unknown}; known: {sorted(default)}.")
    config = {**default, **(presets[preset] if preset is not None else {})}
    config.update({key: value for key, value in overrides.items() if value is not None})
    return config


class ConfigFromAttributes:
    """`get_config` and `from_config` of a model whose constructor arguments are kept as attributes of
    the same names, listed in `config_names` (besides Keras' `name` and `trainable`)."""

    config_names: tuple[str, ...] = ()

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                **{name: getattr(self, name) for name in self.config_names}}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
