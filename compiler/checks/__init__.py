"""Checks on a validated job: guard rails, physical limits, datasets, Customizer's advice."""
