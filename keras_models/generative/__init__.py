"""What the image generative families share: the base model, latent paths, and training callbacks.

- `ImageGenerativeModel`: data checks, labels, latent sampling, `generate` / `interpolate`, the seed
  state saved with the weights, the networks to deploy (`export_targets`).
- `slerp`: spherical interpolation of Gaussian latents.
- `SampleGrid`, `TrainingGuard`, `TrainingFailure`, `image_grid`, `save_image`: callbacks and pictures.
"""

from keras_models.generative.base import ImageGenerativeModel
from keras_models.generative.callbacks import SampleGrid, TrainingFailure, TrainingGuard, image_grid, save_image
from keras_models.generative.latent import slerp

__all__ = ["ImageGenerativeModel", "SampleGrid", "TrainingFailure", "TrainingGuard", "image_grid", "save_image", "slerp"]
