"""Registers the b2b-integrations AirflowPlugin (the only registration: no entry point as well).

Airflow's plugin loader imports every .py file in plugins/ as a top-level module; plugins/.airflowignore
keeps it out of the package folder, and this shim is the one file it loads.
"""

from b2b_integrations.plugin import B2BIntegrationsPlugin

__all__ = ["B2BIntegrationsPlugin"]
