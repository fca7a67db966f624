"""Hooks: thin I/O wrappers over Airflow provider hooks."""
