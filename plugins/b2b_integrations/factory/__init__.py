"""Integration templates + customer configs -> Airflow DAGs (config -> plan -> build)."""
