"""mangacolor_jax: train and use colorizers for manga / anime line art (JAX / Flax)."""

__version__ = "0.1.0"
