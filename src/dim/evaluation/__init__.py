"""Robustness evaluation: norms, verification, the resumable runner and metrics."""
