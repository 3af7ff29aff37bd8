"""Reinforcement learning: agents that learn from gymnasium environments.

Same config file, run directory, logging, checkpoints, exact resume and verbs as supervised
training; :func:`torchlab.train` and :func:`torchlab.evaluate` hand configs with an
``agent:`` section here. One agent per file in :mod:`torchlab.rl.agents`, sharing
:mod:`torchlab.rl.common`; tiny test environments in :mod:`torchlab.rl.testing`.
See docs/rl.md.
"""
