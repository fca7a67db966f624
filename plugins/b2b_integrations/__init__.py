"""b2b-integrations: B2B integration patterns as Airflow 3 building blocks, deployed per customer."""

__version__ = "0.1.0"
