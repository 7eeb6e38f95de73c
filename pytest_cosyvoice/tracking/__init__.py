"""Tracking across sessions: run key, software stack, machine health, the stores (baselines and quality
goldens on one skeleton), history, drift, change points, the A/B rule and its statistics, and the
session end's verdicts (`verdicts.decide`: judged, then the baseline and goldens saved). No pytest import."""
