"""Tracking across sessions: run key, software stack, machine health, baselines, history, drift,
change points. No pytest import."""
