"""Small helpers every part of the package shares (file writing)."""
