"""Capture plans: the TOML format with its validation, and the ordering of shots."""
