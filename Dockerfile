# The official Airflow image with b2b-integrations installed, for docker-compose.yaml and any other
# deployment (Kubernetes, ECS): the package comes from pip, pinned by constraints.txt; the plugin shim, the
# DAG factory file and the shipped include/ are baked in, so the image runs without mounts too (compose
# mounts dags/, plugins/ and include/ over them for a live edit loop).
#
#   docker build -t b2b-integrations-airflow:local .
#   docker build --build-arg AIRFLOW_VERSION=3.3.3 ...   # after bumping apache-airflow in constraints.txt
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

# As Airflow's docs advise for extended images: pin apache-airflow to the image's own version in the same
# pip call, so resolving our dependencies can never up- or downgrade Airflow itself.
COPY --chown=airflow:root pyproject.toml README.md constraints.txt /opt/b2b/
COPY --chown=airflow:root plugins/b2b_integrations /opt/b2b/plugins/b2b_integrations
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -c /opt/b2b/constraints.txt /opt/b2b \
    && rm -rf /opt/b2b/plugins

# The plugin registration shim and its .airflowignore (the package itself is installed above), the DAG
# factory entry file, and the shipped templates and customers.
COPY --chown=airflow:root plugins/b2b_integrations_plugin.py plugins/.airflowignore /opt/airflow/plugins/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root include/ /opt/airflow/include/

# Staged records travel between tasks through this folder: with workers on several hosts it must be
# shared storage (a volume in compose, a ReadWriteMany volume on Kubernetes). Group-writable, as the
# official image's folders are, so any AIRFLOW_UID with group 0 can write.
# /opt/demo-sftp is the demo SFTP server's folder (a compose volume takes its owner from here).
USER root
RUN mkdir -p /opt/airflow/b2b_data /opt/demo-sftp \
    && chown airflow:root /opt/airflow/b2b_data /opt/demo-sftp \
    && chmod 2775 /opt/airflow/b2b_data /opt/demo-sftp
USER airflow

ENV B2B_INCLUDE_DIR=/opt/airflow/include \
    B2B_DATA_DIR=/opt/airflow/b2b_data
