#!/usr/bin/env bash
# DPO with LoRA on Llama 3.1 70B: the planner shards the frozen base with ZeRO-3 across a node.
python -m ftc model=llama70b method=dpo cluster=example data=demo "$@"
