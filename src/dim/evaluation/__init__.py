"""Robustness evaluation: the resumable runner (plan, execute, commit), reuse, checks and metrics."""
