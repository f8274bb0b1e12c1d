"""Measuring speed and memory: the benchmark behind `python -m mangacolor_jax.benchmark`."""
