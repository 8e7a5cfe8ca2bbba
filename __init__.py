"""ftc: a fine-tuning compiler for Slurm clusters."""

__version__ = "0.1.0"
