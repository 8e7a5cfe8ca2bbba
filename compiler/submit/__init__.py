"""Side effects: writing run folders and submitting them to Slurm or the local executor."""
