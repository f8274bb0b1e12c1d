"""The sweep's lattice: parsing --param, the seeded jitter, edge extensions, refinement."""

import math

import pytest

from mangacolor_jax.tuning import grid

G_LR = grid.parse_param("optim.g_lr=1e-5:1e-2:log:4")
L1 = grid.parse_param("loss.l1_weight=1:1000:log:4")


def test_parse_param_and_bad_specs():
  assert G_LR == grid.Param("optim.g_lr", 1e-5, 1e-2, "log", 4)
  assert math.isclose(G_LR.spacing, 1.0)  # one decade per step
  assert grid.parse_param("config.model.gen.dropout=0:0.3:lin:4").spacing == pytest.approx(
      0.1)
  for bad in ("optim.g_lr", "optim.g_lr=1e-5:1e-2:log", "optim.g_lr=0:1:log:3",
              "optim.g_lr=1:0.1:log:3", "optim.g_lr=1e-5:1e-2:cube:3"):
    with pytest.raises(ValueError, match="--param"):
      grid.parse_param(bad)


def test_jittered_grid_is_seeded_bounded_and_ordered():
  points = grid.grid_points([G_LR, L1])
  assert len(points) == 16
  first = [grid.point_values([G_LR, L1], p, 0.3, seed=0) for p in points]
  again = [grid.point_values([G_LR, L1], p, 0.3, seed=0) for p in points]
  other = [grid.point_values([G_LR, L1], p, 0.3, seed=1) for p in points]
  plain = [grid.point_values([G_LR, L1], p, 0.0, seed=0) for p in points]
  assert first == again  # the same command gives the same trials
  assert first != other and first != plain  # the seed and the jitter matter
  assert sorted({v["optim.g_lr"] for v in plain}) == [1e-5, 1e-4, 1e-3, 1e-2]
  for p, v, nominal in zip(points, first, plain):
    for name in v:
      moved = abs(math.log10(v[name]) - math.log10(nominal[name]))
      assert 0 < moved <= 0.3 + 1e-3, (p, name)  # at most 0.3 of a decade
  # A point's values do not depend on the other points of the sweep.
  assert grid.point_values([G_LR, L1], grid.Point(0, (5, -1)), 0.3, 0) == \
      grid.point_values([G_LR, L1], grid.Point(0, (5, -1)), 0.3, 0)


def test_extension_points_step_past_the_edges_holding_the_best():
  planned = grid.grid_points([G_LR, L1])
  # Inside the grid: nothing to extend.
  assert grid.extension_points([G_LR, L1], grid.Point(0, (1, 2)), planned) == []
  # On the low edge of g_lr: one step below, around the best l1_weight.
  new = grid.extension_points([G_LR, L1], grid.Point(0, (0, 2)), planned)
  assert sorted(p.index for p in new) == [(-1, 1), (-1, 2), (-1, 3)]
  # In a corner: past both edges, the corner included.
  new = grid.extension_points([G_LR, L1], grid.Point(0, (3, 3)), planned)
  assert sorted(p.index for p in new) == [(2, 4), (3, 4), (4, 2), (4, 3), (4, 4)]
  # Extended points count as planned: the next extension goes one further.
  new = grid.extension_points([G_LR, L1], grid.Point(0, (-1, 2)),
                              planned + [grid.Point(0, (-1, j)) for j in (1, 2, 3)])
  assert sorted(p.index for p in new) == [(-2, 1), (-2, 2), (-2, 3)]


def test_refine_grid_is_finer_and_centred_on_the_best():
  best = grid.Point(0, (1, 2))
  points = grid.refine_grid([G_LR, L1], best, 3)
  assert len(points) == 8  # 3 x 3 without the centre
  centre = grid.nominal_axis([G_LR, L1], best)
  axes = [grid.nominal_axis([G_LR, L1], p, 3) for p in points]
  for k in range(2):
    assert sorted({round(a[k] - centre[k], 6) for a in axes}) == [-0.5, 0.0, 0.5]
