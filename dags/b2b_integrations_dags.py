"""Airflow DAG factory entry: one DAG per customer x integration x flow, built from include/.

Templates live in include/integrations/, customers in include/customers/ (or B2B_INCLUDE_DIR).
Never fails for a config problem: those are raised by b2b_config_problems.py (which holds no DAG, so its
import error stops nothing), while a customer with a broken file runs on its file's last valid version.
This file is shard 0: with B2B_SHARDS > 1 it holds only the customers whose id hashes to shard 0 (plus our
app's own DAGs), and b2b_integrations_shard_NN.py hold the others.
"""

from b2b_integrations.factory.register import register_dags

register_dags(globals())
