"""Triggers (run in the triggerer; must live in the package, never in a DAG bundle)."""
