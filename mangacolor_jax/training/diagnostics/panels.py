"""The diagnostics' image grids: first-layer filters, top-activating patches, and a batch's
line art beside its targets (uint8 images for TensorBoard)."""

import numpy as np

from mangacolor_jax.utils import images

_TILE = 48  # about the pixels of one filter / patch tile in the image grids


def _tile_grid(tiles: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
  """[N, h, w, 3] float in [0, 1] -> one uint8 grid image, `columns` tiles a row."""
  n, h, w, _ = tiles.shape
  rows = -(-n // columns)
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 0.5, np.float32)
  for i in range(n):
    r, c = divmod(i, columns)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + c * (w + pad):pad + c * (w + pad) + w] = tiles[i]
  return np.rint(np.clip(grid, 0, 1) * 255).astype(np.uint8)


def _upscale(tiles: np.ndarray, size: int) -> np.ndarray:
  factor = max(1, size // max(tiles.shape[1], tiles.shape[2]))
  return tiles.repeat(factor, axis=1).repeat(factor, axis=2)


def filter_grids(kernel: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
  """First-layer kernels [kh, kw, c_in, c_out] as image grids, one per input group.

  Input channel 0 is the line art (gray); the next three, when present, a colour image
  (RGB: D's image, G's hint colours); any further one (G's hint mask) gray. Each filter is
  scaled by its own largest |weight|, with 0 at mid-gray.
  """
  kernel = np.asarray(kernel, np.float32)
  c_in = kernel.shape[2]
  groups = [("lineart", [0])]
  if c_in >= 4:
    groups.append(("rgb", [1, 2, 3]))
  groups += [(f"channel{c}", [c]) for c in range(4 if c_in >= 4 else 1, c_in)]
  out = {}
  for name, channels in groups:
    tiles = kernel[:, :, channels, :].transpose(3, 0, 1, 2)  # [c_out, kh, kw, c]
    scale = np.max(np.abs(tiles), axis=(1, 2, 3), keepdims=True)
    tiles = 0.5 + 0.5 * tiles / np.where(scale > 0, scale, 1.0)
    if tiles.shape[-1] == 1:
      tiles = np.repeat(tiles, 3, axis=-1)
    out[f"{prefix}_{name}"] = _tile_grid(_upscale(tiles, _TILE), columns=8)
  return out


def patch_grid(source: np.ndarray, positions: np.ndarray, layer_hw: tuple[int, int],
               field: tuple[int, ...]) -> np.ndarray:
  """Rows of the input patches that most activate a feature map.

  Args:
    source: the images the network saw, [B, H, W, C] in [-1, 1] (C = 1 or 3).
    positions: [F, K] flat indices into the layer's [B, h, w] positions, best first.
    layer_hw: the layer's (h, w).
    field: (stride_y, stride_x, offset_y, offset_x, size_y, size_x) of the receptive field:
      unit (y, x) sees input rows offset_y + y * stride_y ... + size_y - 1.

  Returns:
    A uint8 grid: one row per feature map, K patches each (white beyond the image).
  """
  sy, sx, oy, ox, hy, hx = field
  h, w = layer_hw
  if source.shape[-1] == 1:
    source = np.repeat(source, 3, axis=-1)
  pad = max(hy, hx) + max(abs(oy), abs(ox))
  padded = np.pad(source, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=1.0)
  tiles = []
  for row in positions:
    for flat in row:
      b, rem = divmod(int(flat), h * w)
      y, x = divmod(rem, w)
      top, left = pad + oy + y * sy, pad + ox + x * sx
      tiles.append(padded[b, top:top + hy, left:left + hx])
  tiles = (np.stack(tiles) + 1.0) * 0.5
  return _tile_grid(_upscale(tiles, _TILE), columns=positions.shape[1])


def sample_rows(lineart: np.ndarray, target: np.ndarray, num: int) -> np.ndarray:
  rows = [np.concatenate([images.to_uint8(np.repeat(lineart[i], 3, axis=-1)),
                          images.to_uint8(target[i])], axis=1)
          for i in range(min(num, lineart.shape[0]))]
  return np.concatenate(rows, axis=0)
