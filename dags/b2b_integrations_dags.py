"""Airflow DAG factory entry: one DAG per customer x integration x flow, built from include/.

Templates live in include/integrations/, customers in include/customers/ (or B2B_INCLUDE_DIR).
Config problems show up as an import error of this file; every valid customer's DAGs still load.
"""

from b2b_integrations.factory.register import register_dags

register_dags(globals())
