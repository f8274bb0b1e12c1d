"""The quality protocol: train at fixed budgets of images seen, several seeds, and score
on a test split that training never reads, with line art from several extractors and with
hints as a person paints them (`python -m mangacolor_jax.quality`, docs/quality.md)."""
