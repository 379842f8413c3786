"""Immutable dataset snapshots: selection, splits, leak checks, reports and formats."""
