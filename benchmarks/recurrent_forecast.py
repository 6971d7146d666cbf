"""The recurrent Forecaster beside statsmodels on statsmodels' bundled series, on the same splits.

    python benchmarks/recurrent_forecast.py                      # both series, 5 seeds
    python benchmarks/recurrent_forecast.py --series sunspots --seeds 7 --output table.md

Series and splits:

- sunspots (yearly, 1700-2008): train 1700-1988, forecast 1989-2008 (20 years). Tuning, for every
  model that has a choice to make, fits 1700-1968 and scores 1969-1988; the test years are never seen.
- co2 (Mauna Loa, weekly with gaps): monthly means, gaps interpolated linearly; the last 48 months are
  the test window, the 48 months before it the validation window.

References (statsmodels, fitted on the same training part; their MAE on the validation window, fitted
on the part before it, is given beside): sunspots AutoReg(9), ARIMA(3,0,0), AutoReg
with the lag order picked by AIC and with the lag order picked on the validation years; co2
Holt-Winters exponential smoothing (additive trend and season, period 12) and SARIMA
(1,1,1)(0,1,1,12).

Forecasters: LSTM and GRU. A small grid (the lookback) is scored on the validation window with the
LSTM (seed 0); the chosen configuration is refitted on the whole training part with
each seed (0 .. seeds-1) and each cell. Reported: MAE and RMSE on the test window (median and range
over seeds for the Forecasters) and the wall time of one fit.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import statsmodels.api as sm  # noqa: E402
from statsmodels.tsa.ar_model import AutoReg, ar_select_order  # noqa: E402
from statsmodels.tsa.arima.model import ARIMA  # noqa: E402
from statsmodels.tsa.holtwinters import ExponentialSmoothing  # noqa: E402
from statsmodels.tsa.statespace.sarimax import SARIMAX  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from keras_models.recurrent.forecaster import Forecaster  # noqa: E402

# What is tuned on the validation window, per series, and what is fixed.
# No XLA: on fits this short its compile costs more than it saves (TensorFlow, 2 CPU cores).
SETTINGS = {
    "sunspots": {
        "fixed": dict(horizon=20, units=8, dropout=0.2, epochs=100, batch_size=32, learning_rate=3e-3,
                      jit_compile=False),
        "grid": {"lookback": (20, 30)},
    },
    "co2": {
        "fixed": dict(horizon=48, seasonal_period=12, units=16, epochs=100, batch_size=32, learning_rate=3e-3,
                      jit_compile=False),
        "grid": {"lookback": (24, 36)},
    },
}
TUNING_SEEDS = (0,)


def load(name):
    """(train, test, validation_train, validation) for `name`, as float64 arrays, and a description."""
    if name == "sunspots":
        frame = sm.datasets.sunspots.load_pandas().data
        years = frame["YEAR"].astype(int).to_numpy()
        values = frame["SUNACTIVITY"].to_numpy(dtype=np.float64)
        train, test = values[years <= 1988], values[(years >= 1989) & (years <= 2008)]
        return train, test, values[years <= 1968], values[(years >= 1969) & (years <= 1988)], (
            "sunspots, yearly: train 1700-1988, test 1989-2008; validation fit 1700-1968, scored 1969-1988")
    if name == "co2":
        weekly = sm.datasets.co2.load_pandas().data["co2"]
        monthly = weekly.resample("MS").mean().interpolate("linear")
        values = monthly.to_numpy(dtype=np.float64)
        first, last = monthly.index[0], monthly.index[-1]
        test_start = monthly.index[-48]
        valid_start = monthly.index[-96]
        return values[:-48], values[-48:], values[:-96], values[-96:-48], (
            f"co2, monthly means {first:%Y-%m} to {last:%Y-%m} ({len(values)} months, gaps interpolated): "
            f"test {test_start:%Y-%m} to {last:%Y-%m}; validation {valid_start:%Y-%m} to "
            f"{monthly.index[-49]:%Y-%m}")
    raise ValueError(f"unknown series {name!r}")


def errors(forecast, actual):
    error = np.asarray(forecast) - np.asarray(actual)
    return float(np.mean(np.abs(error))), float(np.sqrt(np.mean(error ** 2)))


def timed(fit_and_forecast):
    start = time.perf_counter()
    forecast = fit_and_forecast()
    return forecast, time.perf_counter() - start


# -- statsmodels -------------------------------------------------------------------------------------


def autoreg(lags):
    return lambda train, steps: AutoReg(train, lags=lags, trend="c").fit().forecast(steps)


def arima(order):
    return lambda train, steps: ARIMA(train, order=order).fit().forecast(steps)


def autoreg_aic(train, steps):
    selection = ar_select_order(train, maxlag=30, ic="aic", trend="c")
    return selection.model.fit().forecast(steps)


def ets(train, steps):
    return ExponentialSmoothing(train, trend="add", seasonal="add", seasonal_periods=12).fit().forecast(steps)


def sarima(train, steps):
    return SARIMAX(train, order=(1, 1, 1), seasonal_order=(0, 1, 1, 12)).fit(disp=False).forecast(steps)


def references(name, train, test, valid_train, valid):
    """Rows (model, mae, rmse, seconds, note) for statsmodels on `name`."""
    rows = []
    if name == "sunspots":
        candidates = {"AutoReg(9)": autoreg(9), "ARIMA(3,0,0)": arima((3, 0, 0)), "AutoReg, AIC lags": autoreg_aic}
        scores = {lags: errors(autoreg(lags)(valid_train, len(valid)), valid)[0] for lags in range(1, 31)}
        best = min(scores, key=scores.get)
        candidates[f"AutoReg({best}), lags picked on 1969-1988"] = autoreg(best)
    else:
        candidates = {"ETS (Holt-Winters, add. trend and season)": ets, "SARIMA(1,1,1)(0,1,1,12)": sarima}
    for label, method in candidates.items():
        forecast, seconds = timed(lambda: method(train, len(test)))
        mae, rmse = errors(forecast, test)
        validation_mae = errors(method(valid_train, len(valid)), valid)[0]
        rows.append((label, mae, rmse, seconds, f"validation MAE {validation_mae:.2f}"))
    return rows


# -- Forecasters -------------------------------------------------------------------------------------


def tune(name, valid_train, valid, log):
    """The grid point with the lowest median validation MAE of the LSTM over `TUNING_SEEDS`."""
    settings = SETTINGS[name]
    keys = list(settings["grid"])
    results = {}
    for point in itertools.product(*settings["grid"].values()):
        config = {**settings["fixed"], **dict(zip(keys, point))}
        maes = [errors(Forecaster("lstm", seed=seed, **config).fit(valid_train).forecast(len(valid)), valid)[0]
                for seed in TUNING_SEEDS]
        results[point] = float(np.median(maes))
        log(f"  validation {dict(zip(keys, point))}: median MAE {results[point]:.3f}")
    best = min(results, key=results.get)
    return {**settings["fixed"], **dict(zip(keys, best))}, results[best]


def forecasters(train, test, config, seeds):
    rows = []
    for cell in ("lstm", "gru"):
        maes, rmses, seconds = [], [], []
        for seed in range(seeds):
            forecast, elapsed = timed(lambda: Forecaster(cell, seed=seed, **config).fit(train).forecast(len(test)))
            mae, rmse = errors(forecast, test)
            maes.append(mae)
            rmses.append(rmse)
            seconds.append(elapsed)
        note = f"MAE range {min(maes):.2f}-{max(maes):.2f}; per seed " + ", ".join(f"{m:.2f}" for m in maes)
        rows.append((f"Forecaster {cell.upper()} (median of {seeds} seeds)", float(np.median(maes)),
                     float(np.median(rmses)), float(np.median(seconds)), note))
    return rows


def table(rows):
    lines = ["| model | MAE | RMSE | fit + forecast s | notes |", "|---|---:|---:|---:|---|"]
    lines += [f"| {label} | {mae:.2f} | {rmse:.2f} | {seconds:.1f} | {note} |" for label, mae, rmse, seconds, note in rows]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", nargs="+", default=["sunspots", "co2"], choices=["sunspots", "co2"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-tuning", action="store_true",
                        help="skip the validation grid and use its first point")
    parser.add_argument("--output", help="also write the markdown tables to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    out = []

    def log(line):
        print(line, flush=True)
        out.append(line)

    log(f"Keras {keras.__version__}, backend {keras.backend.backend()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for name in args.series:
        train, test, valid_train, valid, description = load(name)
        log(f"\n### {name}\n\n{description}\n")
        start = time.perf_counter()
        rows = references(name, train, test, valid_train, valid)
        if args.no_tuning:
            settings = SETTINGS[name]
            config = {**settings["fixed"], **{key: values[0] for key, values in settings["grid"].items()}}
        else:
            config, validation_mae = tune(name, valid_train, valid, log)
            log(f"\nForecaster LSTM validation MAE of the chosen configuration: {validation_mae:.2f}")
        log(f"\nForecaster configuration (chosen on the validation window): {config}\n")
        rows += forecasters(train, test, config, args.seeds)
        log(table(rows))
        best = min((row for row in rows if not row[0].startswith("Forecaster")), key=lambda row: row[1])
        for row in rows:
            if row[0].startswith("Forecaster"):
                log(f"\n{row[0]}: MAE / best statsmodels ({best[0]}) = {row[1] / best[1]:.2f}")
        log(f"\n{name}: {time.perf_counter() - start:.0f} s in all")
    if args.output:
        with open(args.output, "w") as handle:
            handle.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
