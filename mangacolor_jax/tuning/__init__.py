"""Tuning: the learning-rate range test and jittered log-grid sweeps.

The library under `python -m mangacolor_jax.tune` (which holds the documentation, flags
and `main`):

  lr_range    the range test: ramps, smoothing, suggestions (`run_steps` trains a ramp)
  grid        the sweep's lattice: Param, Point, jitter, edge extensions, refinement
  sweep       Sweep: runs the trials (in this process or as train processes), resumably
  sweep_spec  the settings a sweep's workdir keeps, checked on every rerun
  reports     ranking direction, results.csv and results.md
  plots       lr_range.png and sweep.png
  overrides   setting a swept config field; the command line's --config.* overrides
  outputs     the folder claim's command name, the JSON layout, rounding
"""
