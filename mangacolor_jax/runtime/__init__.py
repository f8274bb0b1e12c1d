"""How a run meets the hardware: the device mesh, compilation, host memory, and its keys."""
