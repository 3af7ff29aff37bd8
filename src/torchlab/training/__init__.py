"""The training loop and its collaborators: optimizers, schedules, losses, callbacks, checkpoints."""
