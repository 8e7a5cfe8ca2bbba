"""Rendering a plan into the exact files of its run folder (the sbatch script)."""
