"""Torch modules and their losses, one file per model family; ``registry`` finds them by name."""
