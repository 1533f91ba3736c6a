"""Training: checks before work, the loop, its state and its logs."""
