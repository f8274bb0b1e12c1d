"""Training a colorizer: config checks, optimisers, the state, the objective, the steps,
evaluation, checkpoints and the loop that runs them."""
