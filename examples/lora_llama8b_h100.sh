#!/usr/bin/env bash
# LoRA on Llama 3.1 8B, one H100. Use your data with: data=custom data.name=NAME data.path=DIR
python -m ftc model=llama8b method=lora cluster=example data=demo method.epochs=2 "$@"
