"""Transform callables shipped with the package (allow-listed for templates)."""
