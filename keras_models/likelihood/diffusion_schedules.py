"""Noise schedules of the diffusion models and the closed forms computed from them, in float64 numpy.

The forward process adds Gaussian noise in `T = timesteps` steps, `q(x_t | x_{t-1}) = N(sqrt(1 - beta_t)
x_{t-1}, beta_t I)`, so that `q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)` with
`alpha_bar_t = prod_{s <= t} (1 - beta_s)`. Timesteps are indexed 0 .. T-1 (Ho et al. write 1 .. T).

- `"linear"`: betas evenly spaced from 1e-4 to 0.02 for T = 1000 (Ho et al., 2020, "Denoising Diffusion
  Probabilistic Models"), both ends scaled by 1000 / T so that shorter chains reach the same noise
  level (Nichol & Dhariwal, 2021); clipped at 0.999 (chains shorter than 21 steps).
- `"cosine"`: `alpha_bar(t) = f(t) / f(0)`, `f(t) = cos(((t / T + s) / (1 + s)) pi / 2)^2`, s = 0.008,
  betas clipped at 0.999 (Nichol & Dhariwal, 2021, "Improved Denoising Diffusion Probabilistic Models").
"""

from __future__ import annotations

import numpy as np

from keras_models.checks import check_choice, check_count

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v")
COSINE_OFFSET = 0.008
MAX_BETA = 0.999


def linear_betas(timesteps):
    scale = 1000.0 / timesteps
    return np.minimum(np.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=np.float64), MAX_BETA)


def cosine_betas(timesteps):
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + COSINE_OFFSET) / (1.0 + COSINE_OFFSET) * np.pi / 2.0) ** 2
    alpha_bars = f / f[0]
    return np.minimum(1.0 - alpha_bars[1:] / alpha_bars[:-1], MAX_BETA)


class NoiseSchedule:
    """The betas of one schedule and what the losses and samplers read from them (float64 numpy).

    Attributes:
        betas, alphas, alpha_bars: `(T,)`; `alpha_bars_prev[t]` is `alpha_bar_{t-1}` (1 at t = 0).
        posterior_variance: `beta~_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)`, the variance
            of q(x_{t-1} | x_t, x_0) (0 at t = 0).
        posterior_x0_coef, posterior_xt_coef: the posterior mean is `posterior_x0_coef[t] x_0 +
            posterior_xt_coef[t] x_t`.
    """

    def __init__(self, name="linear", timesteps=1000):
        self.name = check_choice(name, SCHEDULES, "schedule")
        self.timesteps = check_count(timesteps, "timesteps")
        if self.timesteps < 2:
            raise ValueError(f"timesteps must be at least 2; got timesteps={timesteps!r}.")
        self.betas = linear_betas(self.timesteps) if name == "linear" else cosine_betas(self.timesteps)
        self.alphas = 1.0 - self.betas
        self.alpha_bars = np.cumprod(self.alphas)
        self.alpha_bars_prev = np.concatenate([[1.0], self.alpha_bars[:-1]])
        self.posterior_variance = self.betas * (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars)
        self.posterior_x0_coef = self.betas * np.sqrt(self.alpha_bars_prev) / (1.0 - self.alpha_bars)
        self.posterior_xt_coef = (1.0 - self.alpha_bars_prev) * np.sqrt(self.alphas) / (1.0 - self.alpha_bars)

    def sampling_timesteps(self, steps):
        """The `steps` timesteps a sampler visits, evenly spaced from T-1 down to 0 (T-1 alone for one
        step, every timestep for `steps = T`)."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= self.timesteps:
            raise ValueError(f"steps must be an integer in [1, {self.timesteps}]; got steps={steps!r}.")
        return np.round(np.linspace(self.timesteps - 1, 0, int(steps))).astype(np.int64)

    def __repr__(self):
        return f"NoiseSchedule({self.name!r}, timesteps={self.timesteps})"


# -- the network's output as x_0 and epsilon --------------------------------------------------------

def split_prediction(output, x_t, alpha_bar, prediction):
    """`(x0, epsilon)` from the denoiser's `output` at `x_t`, for `prediction` "epsilon" or "v"
    (v = sqrt(alpha_bar) epsilon - sqrt(1 - alpha_bar) x_0, Salimans & Ho, 2022). `alpha_bar`
    broadcasts against the images (shape `(n, 1, 1, 1)`); works on numpy arrays and tensors."""
    root, root_noise = alpha_bar**0.5, (1.0 - alpha_bar) ** 0.5
    if prediction == "epsilon":
        return (x_t - root_noise * output) / root, output
    return root * x_t - root_noise * output, root_noise * x_t + root * output


def training_target(x0, noise, alpha_bar, prediction):
    """What the denoiser learns to output for `x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise`."""
    if prediction == "epsilon":
        return noise
    return alpha_bar**0.5 * noise - (1.0 - alpha_bar) ** 0.5 * x0
