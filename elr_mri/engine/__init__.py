"""The training engine: methods (single network, ELR+ pair), the epoch loop, checkpoints."""
