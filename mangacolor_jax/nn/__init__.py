"""The networks and what acts on their arrays: layers, models, losses, hints, image metrics."""
