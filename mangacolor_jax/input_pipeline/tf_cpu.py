"""TensorFlow for the input pipeline, kept off the accelerators: import `tf` from here.

tf.data runs on the host; TensorFlow left to itself would claim the GPUs' memory that JAX
needs. Hiding them has to happen before TensorFlow first touches its devices, so every
module of the input pipeline that uses TensorFlow takes it from this one.
"""

from absl import logging
import tensorflow as tf

try:
  tf.config.set_visible_devices([], "GPU")
except (RuntimeError, ValueError) as e:  # TF already initialised its devices.
  logging.warning("Could not hide GPUs from TensorFlow: %s", e)

__all__ = ["tf"]
