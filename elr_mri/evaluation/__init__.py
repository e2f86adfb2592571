"""Evaluation of trained classifiers: metrics with participant-level bootstrap intervals."""
