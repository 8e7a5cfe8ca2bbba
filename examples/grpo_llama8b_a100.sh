#!/usr/bin/env bash
# GRPO with a programmatic reward (exact match with each row's answer) on the A100 partition.
python -m ftc model=llama8b method=grpo method.reward.kind=exact_match cluster=example cluster.partition=a100 data=demo "$@"
