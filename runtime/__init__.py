"""The part of ftc that runs on the GPU nodes: `python -m ftc.runtime RUN_DIR` trains what plan.json says.

Unlike `ftc.compiler`, it may import the training stack (torch, transformers, TRL, PEFT, DeepSpeed).
"""
