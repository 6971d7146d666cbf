"""`benchmarks/gan_quality.py`'s side-run options: builder options parsed as Python literals, bad ones
refused by name, and the epochs and options a run used reported with its figures."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent.parent.parent / "benchmarks" / "gan_quality.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gan_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_builder_options_are_python_literals(script):
    assert script.builder_option("style_mixing=0.5") == ("style_mixing", 0.5)
    assert script.builder_option("widths=(32, 16)") == ("widths", (32, 16))
    assert script.builder_option("loss='hinge'") == ("loss", "hinge")
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=VALUE"):
        script.builder_option("style_mixing")
    with pytest.raises(argparse.ArgumentTypeError, match="not a Python literal: 'hinge'"):
        script.builder_option("loss=hinge")


def test_side_run_options_are_refused_where_they_would_not_apply(script, capsys):
    with pytest.raises(SystemExit) as raised:
        script.main(["--variants", "pix2pix", "--epochs", "3"])
    assert raised.value.code == 2
    assert "sampled variants only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        script.main(["--judge", "saved", "--option", "style_mixing=0.5"])
    assert raised.value.code == 2
    assert "--judge only judges saved samples" in capsys.readouterr().err


def test_a_side_run_reports_its_epochs_and_options_and_builds_with_them(script):
    x = np.random.default_rng(0).uniform(size=(64, 8, 8, 1)).astype("float32")
    y = np.arange(64) % 10
    _, _, _, facts = script.sample_variant("gan", x, y, epochs=1, options={"latent_dim": 7})
    assert facts["epochs"] == 1 and facts["options"] == {"latent_dim": 7}
    with pytest.raises(ValueError, match="no_such_option"):  # the builder saw it
        script.sample_variant("gan", x, y, epochs=1, options={"no_such_option": 1})
