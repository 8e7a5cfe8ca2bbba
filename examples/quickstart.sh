#!/usr/bin/env bash
# The main job on the embedded default: LoRA on the tiny Llama (built offline), bundled demo
# data, local executor, CPU. Trains in about a minute and prints eval before and after.
python -m ftc method=lora model=tiny data=demo "$@"
