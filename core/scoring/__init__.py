"""Scoring finished trajectories: the rewards (rewards) and the judges of correctness (judges)."""
