"""Seeing inside training: TensorBoard diagnostics and the debugging checklist."""
