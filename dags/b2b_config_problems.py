"""Config problems of the b2b-integrations include folder, shown as this file's Airflow import error.

This file defines no DAG on purpose. Airflow marks every DAG of a file with an import error as stale, so the
customers' DAGs live in b2b_integrations_dags.py, which never fails for a config problem, and the problems
(file, line, key path and message of each) are raised here, where they can stop nothing. A customer whose
file is broken keeps running on its last valid version meanwhile; the message says so.
"""

from b2b_integrations.factory.register import raise_config_problems

raise_config_problems(globals())
