"""Policies for what arrives over HTTP (JSON bodies) and where we may send (callback addresses); pure."""
