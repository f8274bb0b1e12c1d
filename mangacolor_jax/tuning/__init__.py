"""Tuning: the learning-rate range test and jittered log-grid sweeps."""
