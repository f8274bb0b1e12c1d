"""Using a trained model: colouring line art of any size, ensembles, and evaluating a run."""
