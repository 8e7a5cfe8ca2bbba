#!/usr/bin/env bash
# Full SFT of Llama 3.1 8B on one node of eight H100s, ZeRO-3 and recompute chosen by the planner.
python -m ftc model=llama8b method=sft cluster=example data=demo resources.gpus_per_node=8 "$@"
