"""The HTTP door: NeMo Customizer's job API and a run dashboard over the same compiler and submitter."""
