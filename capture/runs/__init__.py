"""Capture runs: the state machine, the engine thread, the shot writer, ETA and the CLI."""
