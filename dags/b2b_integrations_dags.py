"""Airflow DAG factory entry: one DAG per customer x integration x flow, built from include/.

Templates live in include/integrations/, customers in include/customers/ (or B2B_INCLUDE_DIR).
Never fails for a config problem: those are raised by b2b_config_problems.py (which holds no DAG, so its
import error stops nothing), while a customer with a broken file runs on its file's last valid version.
"""

from b2b_integrations.factory.register import register_dags

register_dags(globals())
