"""Reading a user's model folder on the login node (config.json and safetensors headers, without torch)."""

from ftc.compiler.modelfolder.reader import ModelInfo, read_model_folder

__all__ = ["ModelInfo", "read_model_folder"]
