"""Presets as data: every transformer model resolves its configuration from a preset the same way."""

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
