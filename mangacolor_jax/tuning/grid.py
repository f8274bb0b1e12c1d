"""The sweep's lattice: swept fields, grid points, jitter, edge extensions, refinement.

Level 0 is the grid of each `Param`'s `num` points (its indices step past the edges when
the grid is extended); level 1 a grid of half the spacing around the best point. Every
point's config values are a function of the point and the seed alone (`point_values`).
"""

import dataclasses
import itertools
import math
from typing import Sequence

import numpy as np

from mangacolor_jax.tuning import outputs


@dataclasses.dataclass(frozen=True)
class Param:
  """One swept config field: `num` points from `lo` to `hi` on a log or linear scale."""
  name: str
  lo: float
  hi: float
  scale: str
  num: int

  @property
  def log(self) -> bool:
    return self.scale == "log"

  def to_axis(self, value: float) -> float:
    return math.log10(value) if self.log else value

  def from_axis(self, u: float) -> float:
    return 10.0**u if self.log else u

  @property
  def spacing(self) -> float:
    """Grid step on the axis (log10 units for a log scale)."""
    if self.num < 2:
      return 0.0
    return (self.to_axis(self.hi) - self.to_axis(self.lo)) / (self.num - 1)


def parse_param(spec: str) -> Param:
  """Parses FIELD=LO:HI:log|lin:N."""
  try:
    name, rng = spec.split("=", 1)
    lo, hi, scale, num = rng.split(":")
    param = Param(name.strip().removeprefix("config."), float(lo), float(hi),
                  scale.strip(), int(num))
  except ValueError as e:
    raise ValueError(f"--param {spec!r} must look like FIELD=LO:HI:log|lin:N, e.g. "
                     "optim.g_lr=1e-5:1e-2:log:4") from e
  if param.scale not in ("log", "lin"):
    raise ValueError(f"--param {spec!r}: scale must be log or lin")
  if param.num < 1 or param.hi < param.lo:
    raise ValueError(f"--param {spec!r}: need N >= 1 and LO <= HI")
  if param.log and param.lo <= 0:
    raise ValueError(f"--param {spec!r}: a log scale needs LO > 0")
  return param


@dataclasses.dataclass(frozen=True)
class Point:
  """A node of the sweep's lattice: level 0 is the grid (its indices may step past the
  edges when the grid is extended), level 1 the refined grid around `center`."""
  level: int
  index: tuple[int, ...]
  center: tuple[float, ...] | None = None  # level 1: axis coordinates it is centred on


def nominal_axis(params: Sequence[Param], point: Point, refine_points: int = 3
                 ) -> list[float]:
  """Unjittered axis coordinates of a lattice point."""
  if point.level == 0:
    return [p.to_axis(p.lo) + i * p.spacing for p, i in zip(params, point.index)]
  fine = [p.spacing / (refine_points - 1) for p in params]
  half = (refine_points - 1) / 2
  return [c + (i - half) * f for c, i, f in zip(point.center, point.index, fine)]


def point_values(params: Sequence[Param], point: Point, jitter: float, seed: int,
                 refine_points: int = 3) -> dict[str, float]:
  """The jittered config values of a lattice point (deterministic in seed and point).

  Each coordinate moves by up to `jitter` of its grid step, uniformly; the generator is
  keyed by the point itself, so a point's values do not depend on which other points the
  sweep runs, or in what order. Values keep 3 significant digits.
  """
  key = [int(seed), point.level] + [10_000 + i for i in point.index]
  u = np.random.default_rng(key).uniform(-1.0, 1.0, size=len(params))
  axis = nominal_axis(params, point, refine_points)
  scale = 1.0 if point.level == 0 else 1.0 / (refine_points - 1)
  return {p.name: outputs.round_sig(p.from_axis(a + jitter * scale * p.spacing * du))
          for p, a, du in zip(params, axis, u)}


def grid_points(params: Sequence[Param]) -> list[Point]:
  """The level-0 grid: every combination of each field's `num` indices."""
  return [Point(0, idx) for idx in itertools.product(*(range(p.num) for p in params))]


def extension_points(params: Sequence[Param], best: Point, planned: Sequence[Point]
                     ) -> list[Point]:
  """Points one grid step past each edge the best point lies on, around it.

  For a field whose best index is the lowest (highest) planned one, the candidates take
  the next index below (above); every other field takes the best index and its planned
  neighbours. Returns the candidates not yet planned (none: the best is inside).
  """
  level0 = [p.index for p in planned if p.level == 0]
  choices, on_edge = [], False
  for k, param in enumerate(params):
    used = sorted({idx[k] for idx in level0})
    i = best.index[k]
    near = [j for j in (i - 1, i, i + 1) if used[0] <= j <= used[-1]]
    if param.num > 1 and i == used[0]:
      near.append(i - 1)
      on_edge = True
    if param.num > 1 and i == used[-1]:
      near.append(i + 1)
      on_edge = True
    choices.append(sorted(set(near)))
  if not on_edge:
    return []
  known = set(level0)
  return [Point(0, idx) for idx in itertools.product(*choices) if idx not in known]


def refine_grid(params: Sequence[Param], best: Point, refine_points: int) -> list[Point]:
  """A grid of `refine_points` per field over +-half a grid step around the best point,
  without its centre (the best point itself)."""
  if refine_points < 2:
    raise ValueError(f"--refine_points={refine_points} must be at least 2")
  center = tuple(nominal_axis(params, best))
  mid = (refine_points - 1) / 2
  return [Point(1, idx, center)
          for idx in itertools.product(*(range(refine_points) for _ in params))
          if not all(i == mid for i in idx)]


def grid_value(param: Param, i: int) -> float:
  """The unjittered value of grid index `i` of `param`, to 3 digits (a plot's ticks)."""
  return outputs.round_sig(param.from_axis(param.to_axis(param.lo) + i * param.spacing))
