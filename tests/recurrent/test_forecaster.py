"""The recurrent Forecaster: accuracy against baselines, interval coverage, exog, determinism, bad input."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from keras_models.recurrent.forecaster import Forecaster

# Small networks, few epochs and no XLA (whose compile costs more than it saves on fits this short)
# keep each fit to a few seconds on two CPU cores.
FAST = dict(jit_compile=False)
TINY = dict(units=8, epochs=3, batch_size=32, seed=0, **FAST)


def seasonal_trend(n, noise=0.05, seed=0):
    """A monthly-like series: linear trend, a 12-step season and small Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10.0 + 0.05 * t + 2.0 * np.sin(2 * np.pi * t / 12) + noise * rng.normal(size=n)


def ar1(n, phi=0.6, sigma=1.0, seed=0):
    rng = np.random.default_rng(seed)
    noise = sigma * rng.normal(size=n)
    values = np.empty(n)
    values[0] = noise[0] / np.sqrt(1 - phi ** 2)
    for t in range(1, n):
        values[t] = phi * values[t - 1] + noise[t]
    return values


@pytest.fixture(scope="module")
def fitted():
    """A tiny fitted model for the checks that need one."""
    return Forecaster("gru", lookback=6, horizon=3, **TINY).fit(ar1(80))


@pytest.mark.slow
def test_beats_seasonal_naive_on_seasonal_trend_series_directly_and_recursively():
    series = seasonal_trend(252)
    train, test = series[:-24], series[-24:]
    model = Forecaster("lstm", horizon=12, seasonal_period=12, units=16, epochs=60, seed=0, **FAST).fit(train)
    assert model.lookback_ == 36 and model.detrend_ == "difference"  # documented defaults
    direct, recursive = model.forecast(12), model.forecast(24)
    np.testing.assert_allclose(recursive[:12], direct)  # the first block is the direct forecast
    naive = np.tile(train[-12:], 2)  # seasonal naive: the last season repeated
    naive_mae = np.mean(np.abs(naive[:12] - test[:12]))
    assert naive_mae > 0.5  # the trend over one season makes the naive forecast miss by 0.6
    assert np.mean(np.abs(direct - test[:12])) < 0.5 * naive_mae
    assert np.mean(np.abs(recursive - test)) < 0.5 * np.mean(np.abs(naive - test))


def test_interval_coverage_on_ar1_noise():
    # AR(1) with unit noise: the 90% one-step interval should hold about 90% of 400 held-out values.
    series = ar1(1000, phi=0.6, sigma=1.0, seed=1)
    model = Forecaster("lstm", lookback=8, horizon=1, units=8, epochs=40, batch_size=64, learning_rate=1e-2, seed=0, **FAST)
    model.fit(series[:600])
    inside, widths = [], []
    for t in range(600, 1000):
        lower, upper = model.update(series[:t]).forecast_interval(1, alpha=0.1)
        inside.append(lower[0] <= series[t] <= upper[0])
        widths.append(upper[0] - lower[0])
    coverage = float(np.mean(inside))
    # The exact interval covers 88% of these 400 values; learned quantiles run a little narrow.
    assert 0.80 <= coverage <= 0.95, coverage
    # The exact interval is phi * y +- 1.645: width 3.29; a band this wide is no trick.
    assert 2.6 < np.median(widths) < 4.0, np.median(widths)


@pytest.mark.slow
def test_exog_improves_a_series_driven_by_exog():
    rng = np.random.default_rng(3)
    n = 300
    exog = rng.normal(size=(n, 1))
    series = 5.0 + 3.0 * exog[:, 0] + 0.3 * ar1(n, seed=4)
    train, test = slice(0, n - 10), slice(n - 10, n)
    config = dict(lookback=8, horizon=10, units=8, epochs=40, batch_size=64, learning_rate=1e-2, seed=0, **FAST)
    with_exog = Forecaster("gru", **config).fit(series[train], exog=exog[train])
    without = Forecaster("gru", **config).fit(series[train])
    error_with = np.mean(np.abs(with_exog.forecast(10, exog=exog[test]) - series[test]))
    error_without = np.mean(np.abs(without.forecast(10) - series[test]))
    assert error_with < 0.5 * error_without, (error_with, error_without)


def test_pandas_series_gives_the_numpy_result_and_seeds_repeat(fitted):
    values = ar1(80)
    index = pd.date_range("2000-01-01", periods=80, freq="MS")
    params = fitted.get_params()
    from_pandas = clone(fitted).fit(pd.Series(values, index=index))
    np.testing.assert_array_equal(from_pandas.forecast(5), fitted.forecast(5))
    other_seed = Forecaster(**{**params, "seed": 1}).fit(values)
    assert np.max(np.abs(other_seed.forecast(5) - fitted.forecast(5))) > 1e-4


def test_interval_brackets_forecast_and_widens_with_confidence(fitted):
    lower90, upper90 = fitted.forecast_interval(3, alpha=0.1)
    lower50, upper50 = fitted.forecast_interval(3, alpha=0.5)
    assert np.all(lower90 <= lower50) and np.all(upper50 <= upper90)
    assert np.all(upper90 - lower90 > upper50 - lower50)


# -- bad input ---------------------------------------------------------------------------------------


def test_nan_in_series_is_named():
    series = ar1(60)
    series[17] = np.nan
    with pytest.raises(ValueError, match="series contains NaN at position 17"):
        Forecaster(**TINY).fit(series)


def test_too_short_series_names_lookback_and_horizon():
    with pytest.raises(ValueError, match=r"series has 12 values; lookback=10 plus horizon=3 needs at least 13"):
        Forecaster(lookback=10, horizon=3, **TINY).fit(np.arange(12.0))


def test_exog_of_wrong_length():
    with pytest.raises(ValueError, match=r"exog must have shape \(50, k\); got shape \(49, 2\)"):
        Forecaster(lookback=5, **TINY).fit(ar1(50), exog=np.zeros((49, 2)))


def test_forecast_before_fit():
    with pytest.raises(ValueError, match="not fitted yet"):
        Forecaster().forecast(3)


@pytest.mark.parametrize("steps", [0, -2, 1.5])
def test_steps_must_be_positive(fitted, steps):
    with pytest.raises(ValueError, match=f"steps must be a positive integer; got steps={steps}"):
        fitted.forecast(steps)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 2])
def test_alpha_outside_unit_interval(fitted, alpha):
    with pytest.raises(ValueError, match=f"alpha must be in \\(0, 1\\); got alpha={alpha}"):
        fitted.forecast_interval(2, alpha=alpha)


def test_alpha_beyond_trained_quantiles_and_steps_beyond_horizon(fitted):
    with pytest.raises(ValueError, match="needs the 0.005 and 0.995 quantiles"):
        fitted.forecast_interval(2, alpha=0.01)
    with pytest.raises(ValueError, match="steps must be at most horizon=3; got steps=4"):
        fitted.forecast_interval(4)


def test_future_exog_required_and_checked():
    rng = np.random.default_rng(0)
    exog = rng.normal(size=(60, 2))
    model = Forecaster(lookback=5, horizon=2, **TINY).fit(ar1(60), exog=exog)
    with pytest.raises(ValueError, match=r"fitted with exog \(2 column\(s\)\); forecast needs the future exog of shape \(4, 2\)"):
        model.forecast(4)
    with pytest.raises(ValueError, match=r"exog must have shape \(4, 2\); got shape \(4, 1\)"):
        model.forecast(4, exog=exog[:4, :1])
    assert model.forecast(4, exog=exog[:4]).shape == (4,)


@pytest.mark.parametrize("argument, value", [
    ("cell", "transformer"), ("horizon", 0), ("lookback", -1), ("dropout", 1.0), ("detrend", "log"),
    ("quantiles", (0.1, 1.0)), ("learning_rate", 0.0),
])
def test_bad_parameters_are_named(argument, value):
    with pytest.raises(ValueError, match=f"{argument}="):
        Forecaster(**{**TINY, argument: value}).fit(ar1(60))


# -- other backends ----------------------------------------------------------------------------------

_BACKEND_SCRIPT = """
import numpy as np
from keras_models.recurrent.forecaster import Forecaster
t = np.arange(200)
series = np.sin(2 * np.pi * t / 12)
model = Forecaster("{cell}", lookback=24, horizon=12, units=8, epochs=40, linear_skip=False, seed=0)
error = np.mean(np.abs(model.fit(series[:-12]).forecast(12) - series[-12:]))
print("MAE", error)
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend, cell", [("jax", "lstm"), ("torch", "gru")])
def test_trains_on_other_backends(backend, cell):
    # Without the linear path, only the recurrent layers can learn the sine: MAE well under its 0.64.
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_THREEFRY_PARTITIONABLE": "0"}
    result = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT.format(cell=cell)], env=env,
                            capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    error = float(result.stdout.split("MAE")[-1])
    assert error < 0.2, error
