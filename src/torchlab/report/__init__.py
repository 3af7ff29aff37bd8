"""Plots and reports written into a run directory."""
