"""Evaluation of trained classifiers: metrics with participant-level bootstrap intervals."""

# participant resamples behind each 95% interval; here, not in metrics.py, so that the CLI's --help (its default)
# loads no numpy
N_BOOT = 1000
