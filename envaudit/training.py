"""Placeholder: slice A (the Python API for a user's own training step) is being built here."""
