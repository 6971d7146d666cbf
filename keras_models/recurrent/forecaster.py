"""Forecasting one time series with a recurrent network: `Forecaster`.

    >>> model = Forecaster("lstm", horizon=20).fit(series)          # a 1-D array or a pandas Series
    >>> model.forecast(20)                                           # the 20 values after the series
    >>> lower, upper = model.forecast_interval(20, alpha=0.1)        # a 90% interval
    >>> Forecaster("gru", horizon=12, seasonal_period=12).fit(y, exog=x).forecast(12, exog=x_future)

The estimator follows scikit-learn's conventions (constructor arguments stored unchanged and checked in
`fit`, `fit` returns `self`, learned values end in `_`, `sklearn.base.clone` works) and
`forecast(steps)` answers like statsmodels' `results.forecast(steps)`: the `steps` values that follow
the end of the fitted series, as a numpy array.

Inside, everything the network sees is fitted on the training series only:

1. De-trending (`detrend`): `"none"`; `"linear"` subtracts a least-squares line and adds it back when
   forecasting; `"difference"` expresses every window relative to its last value, so the network learns
   changes from the last observation (first differencing, with targets that are cumulative changes,
   so forecasts and quantiles map back to the series exactly); `"auto"` picks `"difference"` when a
   straight line explains at least half of the series' variance, else `"none"`.
2. Scaling: standardization by the training mean and standard deviation (for `"difference"`, by the
   standard deviation of the training targets, the changes over 1 to `horizon` steps); each exog
   column is standardized on its own.
3. Windowing: every run of `lookback` values (with their exog) is an input, the `horizon` values after
   it (with their future exog) the targets.

Network: `num_layers` recurrent layers (`"simple"`, `"lstm"` or `"gru"`) read the window; the last
state, the future exog of the `horizon` steps (flattened) and, with `linear_skip=True`, the window
itself feed one output layer. The window's direct path is the linear autoregressive component of
LSTNet (Lai et al., "Modeling Long- and Short-Term Temporal Patterns with Deep Neural Networks",
SIGIR 2018): the recurrent part models what a linear autoregression of the window misses.

Multi-step strategy: direct multi-output for the first `horizon` steps (one output per step ahead),
recursive beyond: the forecast of one block of `horizon` steps is appended to the history and the next
block is forecast from it.

Intervals (`forecast_interval`) come from quantile regression: the output layer predicts, per step
ahead, the mean (squared error) and the `quantiles` (pinball loss). A `(1 - alpha)` interval is the
predicted `alpha/2` and `1 - alpha/2` quantiles, interpolated linearly between the trained levels; it
covers the direct steps only (at most `horizon` steps ahead).
"""

from __future__ import annotations

import copy

import keras
import numpy as np
from sklearn.base import BaseEstimator

from keras_models import optimizers
from keras_models.recurrent._common import check_positive_int, check_recurrent, recurrent_stack
from keras_models.seeding import set_random_seed
from keras_models.training import compile_model

_DETRENDS = ("auto", "none", "linear", "difference")
DEFAULT_QUANTILES = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)


# --------------------------------------------------------------------------------------------------
# Input checks


def _as_series(series) -> np.ndarray:
    """`series` as a float64 vector, or a `ValueError` naming the problem."""
    values = series.to_numpy() if hasattr(series, "to_numpy") else series
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("series must be numeric (a 1-D array or a pandas Series of numbers).") from None
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"series must be 1-D (one value per time step); got shape {values.shape}.")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        kind = "NaN" if np.isnan(values[bad[0]]) else "infinity"
        raise ValueError(
            f"series contains {kind} at position {bad[0]} ({bad.size} non-finite value(s) in all); "
            "fill or interpolate the gaps first."
        )
    return values


def _as_exog(exog, rows: int, what: str, columns: int | None = None) -> np.ndarray:
    """`exog` as a float64 `(rows, k)` array (a vector is one column), or a `ValueError`."""
    values = exog.to_numpy() if hasattr(exog, "to_numpy") else exog
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numeric.") from None
    if values.ndim == 1:
        values = values[:, None]
    expected = f"({rows}, {columns if columns is not None else 'k'})"
    if values.ndim != 2 or len(values) != rows or (columns is not None and values.shape[1] != columns):
        raise ValueError(f"{what} must have shape {expected}; got shape {values.shape}.")
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{what} contains NaN or infinity (first at row {bad[0][0]}, column {bad[0][1]}).")
    return values


# --------------------------------------------------------------------------------------------------
# The network and its loss


def _forecast_loss(quantiles):
    """Squared error of the mean output plus the pinball loss of each quantile output.

    `y_pred` is `(batch, horizon, 1 + len(quantiles))`: the mean, then the quantiles.
    """
    levels = np.asarray(quantiles, dtype=np.float32)

    def loss(y_true, y_pred):
        y_true = keras.ops.cast(y_true, y_pred.dtype)  # (batch, horizon)
        squared = keras.ops.mean(keras.ops.square(y_true - y_pred[..., 0]), axis=-1)
        error = keras.ops.expand_dims(y_true, -1) - y_pred[..., 1:]  # (batch, horizon, quantiles)
        tau = keras.ops.convert_to_tensor(levels, dtype=y_pred.dtype)
        pinball = keras.ops.maximum(keras.ops.multiply(tau, error), keras.ops.multiply(tau - 1.0, error))
        return squared + keras.ops.mean(pinball, axis=(1, 2))

    return loss


def _network(cell, lookback, horizon, features, exog_columns, units, num_layers, dropout, outputs,
             linear_skip, name="forecaster"):
    """The functional model: recurrent layers over the window, one dense output per step and output."""
    past = keras.Input((lookback, features), name=name + "_past")  # (batch, lookback, 1 + k)
    inputs = [past]
    x = recurrent_stack(past, cell=cell, units=units, num_layers=num_layers, dropout=dropout, recurrent_dropout=0.0,
                        bidirectional=False, return_sequences=False, name=name)  # (batch, units)
    parts = [x]
    if exog_columns:
        future = keras.Input((horizon, exog_columns), name=name + "_future_exog")
        inputs.append(future)
        parts.append(keras.layers.Flatten(name=name + "_future_flat")(future))
    if linear_skip:
        parts.append(keras.layers.Flatten(name=name + "_window_flat")(past))
    if len(parts) > 1:
        x = keras.layers.Concatenate(name=name + "_concat")(parts)
    x = keras.layers.Dense(horizon * outputs, name=name + "_output")(x)
    x = keras.layers.Reshape((horizon, outputs), name=name + "_steps")(x)  # (batch, horizon, outputs)
    return keras.Model(inputs if len(inputs) > 1 else past, x, name=name)


# --------------------------------------------------------------------------------------------------
# The estimator


class Forecaster(BaseEstimator):
    """Forecasts a time series with a recurrent network (simple RNN, LSTM or GRU).

    Args:
        cell: `"simple"`, `"lstm"` or `"gru"`.
        lookback: values in each input window. `None`: three seasonal periods when `seasonal_period`
            is given, else `max(2 * horizon, 10)`.
        horizon: steps forecast directly by one pass of the network; longer forecasts are recursive.
        units: units of each recurrent layer.
        num_layers: stacked recurrent layers.
        dropout: dropout rate of each recurrent layer's inputs (training only).
        epochs, batch_size, learning_rate: Adam's training schedule (gradients clipped to norm 1).
        detrend: `"auto"`, `"none"`, `"linear"` or `"difference"` (see the module docstring).
        seasonal_period: the season length in steps (12 for monthly data), used for the default
            `lookback`; `None` when there is none.
        quantiles: the quantile levels the network learns, in (0, 1); `forecast_interval(alpha)` needs
            `alpha/2` and `1 - alpha/2` within their range.
        linear_skip: also feed the window straight to the output layer (a linear autoregressive path).
        seed: seeds weights, dropout and shuffling (`keras_models.seeding.set_random_seed`); the same seed and
            data give the same forecasts. `None` leaves the random state alone.
        jit_compile: `None` for the library's compile default on this backend and device, or a bool.
        verbose: Keras' `fit` verbosity.

    Attributes (after `fit`):
        model_: the trained `keras.Model`.
        lookback_: the window length used.
        detrend_: the de-trending used (`"auto"` resolved).
        n_obs_: the length of the fitted series; n_exog_: its exog columns (0 without exog).
        history_: the training series' loss per epoch (Keras' `History.history["loss"]`).
    """

    def __init__(self, cell="lstm", lookback=None, horizon=1, *, units=32, num_layers=1, dropout=0.0,
                 epochs=100, batch_size=32, learning_rate=3e-3, detrend="auto", seasonal_period=None,
                 quantiles=DEFAULT_QUANTILES, linear_skip=True, seed=None, jit_compile=None, verbose=0):
        self.cell = cell
        self.lookback = lookback
        self.horizon = horizon
        self.units = units
        self.num_layers = num_layers
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.detrend = detrend
        self.seasonal_period = seasonal_period
        self.quantiles = quantiles
        self.linear_skip = linear_skip
        self.seed = seed
        self.jit_compile = jit_compile
        self.verbose = verbose

    # -- parameters ----------------------------------------------------------------------------------

    def _check_params(self):
        check_recurrent(self.cell, self.units, self.num_layers, self.dropout, 0.0)
        check_positive_int(self.horizon, "horizon")
        if self.lookback is not None:
            check_positive_int(self.lookback, "lookback")
        if self.seasonal_period is not None:
            check_positive_int(self.seasonal_period, "seasonal_period")
        for what in ("epochs", "batch_size"):
            check_positive_int(getattr(self, what), what)
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive; got learning_rate={self.learning_rate!r}.")
        if self.detrend not in _DETRENDS:
            raise ValueError(f"detrend must be one of {_DETRENDS}; got detrend={self.detrend!r}.")
        levels = np.asarray(self.quantiles, dtype=np.float64)
        if levels.ndim != 1 or levels.size == 0 or not np.all((levels > 0) & (levels < 1)):
            raise ValueError(f"quantiles must be levels in (0, 1); got quantiles={self.quantiles!r}.")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))):
            raise ValueError(f"seed must be an integer or None; got seed={self.seed!r}.")

    def _default_lookback(self) -> int:
        if self.lookback is not None:
            return int(self.lookback)
        if self.seasonal_period is not None:
            return 3 * int(self.seasonal_period)
        return max(2 * int(self.horizon), 10)

    # -- transforms ----------------------------------------------------------------------------------

    def _trend(self, positions) -> np.ndarray:
        return self._trend_coef_[0] + self._trend_coef_[1] * np.asarray(positions, dtype=np.float64)

    def _windows(self, values, exog):
        """Input windows `(n, lookback, 1 + k)`, future exog `(n, horizon, k)` and targets `(n, horizon)`,
        all scaled, from the de-trended `values` and the raw `exog` of the training series."""
        lookback, horizon = self.lookback_, self.horizon
        count = len(values) - lookback - horizon + 1
        span = np.lib.stride_tricks.sliding_window_view(values, lookback + horizon)[:count]
        past, target = span[:, :lookback], span[:, lookback:]
        if self.detrend_ == "difference":
            base = past[:, -1:]
            past, target = past - base, target - base
        past = (past - self._center_) / self._scale_
        target = (target - self._center_) / self._scale_
        features = past[..., None]
        future = None
        if exog is not None:
            scaled = (exog - self._exog_mean_) / self._exog_scale_
            windows = np.lib.stride_tricks.sliding_window_view(scaled, lookback + horizon, axis=0)[:count]
            windows = np.moveaxis(windows, -1, 1)  # (n, lookback + horizon, k)
            features = np.concatenate([features, windows[:, :lookback]], axis=-1)
            future = windows[:, lookback:]
        return features.astype(np.float32), future, target.astype(np.float32)

    # -- fitting -------------------------------------------------------------------------------------

    def fit(self, series, exog=None):
        """Fits the network on `series` (1-D array or pandas Series) and optional `exog`.

        Args:
            series: the observed values, oldest first, without gaps (NaN is an error).
            exog: exogenous regressors for the same time steps: `(n, k)` or a vector (one column).

        Returns:
            `self`.

        Raises:
            ValueError: a bad parameter, NaN or infinity, a series shorter than `lookback + horizon`,
                exog of another length.
        """
        self._check_params()
        values = _as_series(series)
        exog_values = None if exog is None else _as_exog(exog, len(values), "exog")
        lookback = self._default_lookback()
        needed = lookback + int(self.horizon)
        if len(values) < needed:
            raise ValueError(
                f"series has {len(values)} values; lookback={lookback} plus horizon={self.horizon} needs at "
                f"least {needed}. Pass a smaller lookback or horizon, or a longer series."
            )
        if self.seed is not None:
            set_random_seed(int(self.seed))

        self.lookback_ = lookback
        self.n_obs_ = len(values)
        self.n_exog_ = 0 if exog_values is None else exog_values.shape[1]
        positions = np.arange(len(values), dtype=np.float64)
        self.detrend_ = self.detrend if self.detrend != "auto" else self._auto_detrend(values, positions)
        if self.detrend_ == "linear":
            slope, intercept = np.polyfit(positions, values, 1)
            self._trend_coef_ = (float(intercept), float(slope))
        else:
            self._trend_coef_ = (0.0, 0.0)
        detrended = values - self._trend(positions)
        if self.detrend_ == "difference":
            # Targets are changes from the last value of their window: scale by their spread.
            span = np.lib.stride_tricks.sliding_window_view(detrended, lookback + int(self.horizon))
            changes = span[:, lookback:] - span[:, lookback - 1:lookback]
            self._center_, self._scale_ = 0.0, float(np.sqrt(np.mean(changes ** 2))) or 1.0
        else:
            self._center_, self._scale_ = float(detrended.mean()), float(detrended.std()) or 1.0
        if exog_values is not None:
            self._exog_mean_ = exog_values.mean(axis=0)
            spread = exog_values.std(axis=0)
            self._exog_scale_ = np.where(spread > 0, spread, 1.0)

        features, future, target = self._windows(detrended, exog_values)
        self._levels_ = np.sort(np.asarray(self.quantiles, dtype=np.float64))
        model = _network(self.cell, lookback, int(self.horizon), features.shape[-1], self.n_exog_,
                         int(self.units), int(self.num_layers), float(self.dropout), 1 + len(self._levels_),
                         bool(self.linear_skip))
        optimizer = optimizers.Adam(learning_rate=float(self.learning_rate), clipnorm=1.0)
        compile_model(model, optimizer=optimizer, loss=_forecast_loss(self._levels_),
                      jit_compile=self.jit_compile, family="recurrent")
        x = features if future is None else (features, future.astype(np.float32))
        history = model.fit(x, target, epochs=int(self.epochs), batch_size=int(self.batch_size),
                            shuffle=True, verbose=self.verbose)
        self.model_ = model
        self.history_ = [float(v) for v in history.history["loss"]]
        # What forecasting starts from: the end of the series (and of its exog).
        self._tail_ = values[-lookback:].copy()
        self._exog_tail_ = None if exog_values is None else exog_values[-lookback:].copy()
        return self

    @staticmethod
    def _auto_detrend(values, positions) -> str:
        slope, intercept = np.polyfit(positions, values, 1)
        residual = values - (intercept + slope * positions)
        variance = values.var()
        explained = 1.0 - residual.var() / variance if variance > 0 else 0.0
        return "difference" if explained >= 0.5 else "none"

    # -- forecasting ---------------------------------------------------------------------------------

    def update(self, series, exog=None):
        """A copy that forecasts from the end of `series`, with this fit's network and transforms.

        `series` is the fitted series extended by new observations, or cut short: it starts at the same
        time step as the training series (which places a linear trend) and holds at least `lookback`
        values. Nothing is refitted; rolling-origin evaluation is `update(series[:t]).forecast(h)`.

        Args:
            series: the observed values, oldest first.
            exog: its exog, `(len(series), k)`, when fitted with exog.

        Returns:
            A new `Forecaster` sharing `model_`.
        """
        if not hasattr(self, "model_"):
            raise ValueError("This Forecaster is not fitted yet; call fit(series) before update.")
        values = _as_series(series)
        if len(values) < self.lookback_:
            raise ValueError(
                f"series has {len(values)} values; forecasting needs at least lookback={self.lookback_}."
            )
        if self.n_exog_ and exog is None:
            raise ValueError(f"This Forecaster was fitted with exog; update needs exog of shape "
                             f"({len(values)}, {self.n_exog_}).")
        if not self.n_exog_ and exog is not None:
            raise ValueError("This Forecaster was fitted without exog; call update without exog.")
        updated = copy.copy(self)
        updated.n_obs_ = len(values)
        updated._tail_ = values[-self.lookback_:].copy()
        if exog is not None:
            updated._exog_tail_ = _as_exog(exog, len(values), "exog", columns=self.n_exog_)[-self.lookback_:]
        return updated

    def _check_forecast(self, steps, exog):
        if not hasattr(self, "model_"):
            raise ValueError("This Forecaster is not fitted yet; call fit(series) before forecasting.")
        steps = check_positive_int(steps, "steps")
        if self.n_exog_ and exog is None:
            raise ValueError(
                f"This Forecaster was fitted with exog ({self.n_exog_} column(s)); forecast needs the "
                f"future exog of shape ({steps}, {self.n_exog_})."
            )
        if not self.n_exog_ and exog is not None:
            raise ValueError("This Forecaster was fitted without exog; call forecast without exog.")
        future = None if exog is None else _as_exog(exog, steps, "exog", columns=self.n_exog_)
        return steps, future

    def _predict_block(self, tail, exog_tail, future_exog, start):
        """The network's outputs for the `horizon` steps after `tail`, in the series' units:
        `(horizon, 1 + quantiles)`. `start` is the position of the first forecast step."""
        lookback, horizon = self.lookback_, int(self.horizon)
        positions = np.arange(start - lookback, start + horizon, dtype=np.float64)
        trend = self._trend(positions)
        window = tail - trend[:lookback]
        base = window[-1] if self.detrend_ == "difference" else 0.0
        features = ((window - base - self._center_) / self._scale_)[None, :, None]
        inputs = [None]
        if self.n_exog_:
            past = (exog_tail - self._exog_mean_) / self._exog_scale_
            features = np.concatenate([features, past[None]], axis=-1)
            if len(future_exog) < horizon:  # a last, partial block: repeat the last known row
                pad = np.repeat(future_exog[-1:], horizon - len(future_exog), axis=0)
                future_exog = np.concatenate([future_exog, pad])
            inputs.append(((future_exog - self._exog_mean_) / self._exog_scale_)[None].astype(np.float32))
        inputs[0] = features.astype(np.float32)
        # The compiled predict function: traced once, then much faster than an eager call per block.
        output = self.model_.predict_on_batch(inputs if len(inputs) > 1 else inputs[0])
        output = np.asarray(output)[0].astype(np.float64)  # (horizon, 1 + quantiles)
        return base + self._center_ + self._scale_ * output + trend[lookback:, None]

    def forecast(self, steps, exog=None) -> np.ndarray:
        """The `steps` values after the end of the fitted series (the network's mean forecast).

        Args:
            steps: how many steps ahead, >= 1; beyond `horizon` the forecast is recursive.
            exog: required when fitted with exog: the future exog, `(steps, k)`.

        Returns:
            A float64 numpy array of shape `(steps,)`.
        """
        steps, future = self._check_forecast(steps, exog)
        horizon, lookback = int(self.horizon), self.lookback_
        tail, exog_tail = self._tail_, self._exog_tail_
        values = []
        while len(values) < steps:
            done = len(values)
            block_exog = None if future is None else future[done:done + horizon]
            block = self._predict_block(tail, exog_tail, block_exog, self.n_obs_ + done)[:, 0]
            block = block[:steps - done]
            values.extend(block)
            tail = np.concatenate([tail, block])[-lookback:]
            if future is not None:
                exog_tail = np.concatenate([exog_tail, future[done:done + len(block)]])[-lookback:]
        return np.asarray(values, dtype=np.float64)

    def forecast_interval(self, steps, alpha=0.05, exog=None):
        """A `(1 - alpha)` prediction interval for each of the next `steps` values.

        The bounds are the predicted `alpha/2` and `1 - alpha/2` quantiles (quantile regression,
        interpolated linearly between the trained `quantiles`).

        Args:
            steps: how many steps ahead, 1 to `horizon`.
            alpha: in (0, 1); `alpha/2` and `1 - alpha/2` must lie within the trained quantile levels.
            exog: as for `forecast`.

        Returns:
            `(lower, upper)`, two float64 arrays of shape `(steps,)`.
        """
        if not (isinstance(alpha, (int, float, np.floating)) and 0.0 < float(alpha) < 1.0):
            raise ValueError(f"alpha must be in (0, 1); got alpha={alpha!r}.")
        steps, future = self._check_forecast(steps, exog)
        if steps > int(self.horizon):
            raise ValueError(
                f"forecast_interval covers the directly forecast steps only: steps must be at most "
                f"horizon={self.horizon}; got steps={steps}. Fit with horizon={steps} for longer intervals."
            )
        low_level, high_level = float(alpha) / 2.0, 1.0 - float(alpha) / 2.0
        levels = self._levels_
        if low_level < levels[0] - 1e-12 or high_level > levels[-1] + 1e-12:
            raise ValueError(
                f"alpha={alpha!r} needs the {low_level:g} and {high_level:g} quantiles, outside the trained "
                f"levels [{levels[0]:g}, {levels[-1]:g}]; fit with quantiles covering them or use a larger alpha."
            )
        block_exog = None if future is None else future[:steps]
        output = self._predict_block(self._tail_, self._exog_tail_, block_exog, self.n_obs_)[:steps]
        predicted = np.sort(output[:, 1:], axis=1)  # monotone in the level, even where outputs cross
        lower = np.array([np.interp(low_level, levels, row) for row in predicted])
        upper = np.array([np.interp(high_level, levels, row) for row in predicted])
        return lower, upper
