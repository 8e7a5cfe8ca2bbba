#!/usr/bin/env bash
# A sweep over learning rate and rank: six points, submitted as one Slurm job array.
python -m ftc -m model=llama8b method=lora cluster=example data=demo method.learning_rate=5e-5,1e-4,2e-4 method.lora.adapter_dim=8,16 "$@"
