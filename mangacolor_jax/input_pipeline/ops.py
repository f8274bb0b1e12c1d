"""Per-example TensorFlow ops of the input pipeline (graph mode, inside Dataset.map)."""

from typing import Tuple

from mangacolor_jax.input_pipeline.tf_cpu import tf


def to_int64_seed(seed: int) -> int:
  """Folds any python int into the int64 range."""
  return (int(seed) + 2**63) % 2**64 - 2**63


def decode_rgb(contents: tf.Tensor) -> tf.Tensor:
  """Decodes JPEG/PNG/WebP (and GIF/BMP) bytes to float32 [h, w, 3] RGB in [0, 1].

  Gray images are replicated to RGB and transparency is composited on white (the paper of
  a drawing). TF 2.21's decode_image reads WebP itself, so no PIL fallback is needed.
  """
  # uint8 first: the WebP decoder supports no other dtype (16-bit PNGs are scaled down).
  image = tf.io.decode_image(contents, channels=0, expand_animations=False)
  image = tf.image.convert_image_dtype(image, tf.float32)
  channels = tf.shape(image)[-1]
  rgb = tf.cond(channels >= 3, lambda: image[..., :3],
                lambda: tf.tile(image[..., :1], [1, 1, 3]))
  # Only images with alpha (2 or 4 channels) are composited: for the others it would be
  # rgb * 1 + 0, the same bits at twice the cost.
  return tf.cond(tf.equal(channels % 2, 0),
                 lambda: rgb * image[..., -1:] + (1.0 - image[..., -1:]), lambda: rgb)


def crop_resize(image: tf.Tensor, hw: Tuple[int, int], scale: tf.Tensor,
                offset: tf.Tensor, fast_upscale: bool = False) -> tf.Tensor:
  """Crops a region with the output's aspect ratio, then resizes it to `hw`.

  Never squashes: the crop has the output's aspect, with area `scale` times that of the
  largest such crop, at relative position `offset` ([2] in [0, 1], 0.5 = centred).
  With `fast_upscale` a crop that is enlarged is resized by plain bilinear instead of the
  antialiased kernel (which only matters when shrinking, and is 3x slower): the device
  path's pipeline does so.
  """
  h, w = hw
  shape = tf.shape(image)
  ih, iw = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  aspect = w / h
  ch = tf.minimum(ih, iw / aspect) * tf.sqrt(scale)
  cw = ch * aspect
  ch = tf.clip_by_value(tf.round(ch), 1.0, ih)
  cw = tf.clip_by_value(tf.round(cw), 1.0, iw)
  y0 = tf.round((ih - ch) * offset[0])
  x0 = tf.round((iw - cw) * offset[1])
  box = tf.cast(tf.stack([y0, x0, ch, cw]), tf.int32)
  crop = tf.slice(image, [box[0], box[1], 0], [box[2], box[3], 3])
  # Antialiased bilinear: large illustrations are shrunk a lot and must not alias.
  shrink = lambda: tf.image.resize(crop, [h, w], method="bilinear", antialias=True)
  if not fast_upscale:
    return tf.clip_by_value(shrink(), 0.0, 1.0)
  enlarge = lambda: tf.image.resize(crop, [h, w], method="bilinear", antialias=False)
  out = tf.cond(tf.logical_and(box[2] <= h, box[3] <= w), enlarge, shrink)
  return tf.clip_by_value(out, 0.0, 1.0)


def color_jitter(image: tf.Tensor, strength: float, seeds: tf.Tensor) -> tf.Tensor:
  """Hue, saturation and brightness jitter, all scaled by `strength` (1 is strong)."""
  image = tf.image.stateless_random_hue(image, min(0.5, 0.08 * strength), seeds[0])
  image = tf.image.stateless_random_saturation(
      image, max(0.0, 1.0 - 0.3 * strength), 1.0 + 0.3 * strength, seeds[1])
  image = tf.image.stateless_random_brightness(image, 0.15 * strength, seeds[2])
  return tf.clip_by_value(image, 0.0, 1.0)


def rotate(image: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
  """Rotates [h, w, 3] by `angle` radians about its centre, zoomed in just enough (by about
  |cos| + |sin| * aspect) that no corner falls outside the image: nothing is invented."""
  h, w = image.shape[0], image.shape[1]
  c, s = tf.cos(angle), tf.sin(angle)
  # Pixel centres span [0, w - 1] x [0, h - 1]: that box, rotated, must fit in itself.
  ry = max(h - 1, 1) / max(w - 1, 1)
  zoom = tf.maximum(tf.abs(c) + tf.abs(s) * ry, tf.abs(c) + tf.abs(s) / ry)
  a0, a1, b0, b1 = c / zoom, -s / zoom, s / zoom, c / zoom
  cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
  # Maps output pixel (x, y) to the input point it samples. The zoom keeps every sample
  # inside the image, so the white fill never shows (beyond float rounding).
  transform = tf.stack([a0, a1, cx - a0 * cx - a1 * cy, b0, b1, cy - b0 * cx - b1 * cy,
                        0.0, 0.0])
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=tf.cast(transform, tf.float32)[None],
      output_shape=tf.constant([h, w], tf.int32), fill_value=tf.constant(1.0),
      interpolation="BILINEAR", fill_mode="CONSTANT")
  return tf.clip_by_value(out[0], 0.0, 1.0)
