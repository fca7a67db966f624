# Airflow image with b2b-integrations installed (first version; the production stack is completed later).
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root pyproject.toml README.md constraints.txt /opt/b2b/
COPY --chown=airflow:root plugins /opt/b2b/plugins
RUN pip install --no-cache-dir -c /opt/b2b/constraints.txt /opt/b2b
