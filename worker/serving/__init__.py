"""Serving: load a trained artifact and predict."""
