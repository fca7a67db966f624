"""Destinations records are written to."""
