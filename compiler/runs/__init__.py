"""Runs already submitted: their records, states, and the status, logs and cancel commands."""
