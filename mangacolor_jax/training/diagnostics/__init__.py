"""Seeing inside training: the TensorBoard diagnostics the loop writes every
`config.diagnostics_every_steps` steps (the doctor reuses their pure parts)."""
