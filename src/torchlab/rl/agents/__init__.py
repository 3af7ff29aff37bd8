"""One agent per file, maths only; shared pieces live in :mod:`torchlab.rl.common`."""
