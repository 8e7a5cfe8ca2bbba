"""Configuration: Hydra composition, the schema and its field types, model URNs, site folders."""
