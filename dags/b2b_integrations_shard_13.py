"""Airflow DAG factory, shard 13: the DAGs of the customers whose id hashes to shard 13 of B2B_SHARDS.

Registers nothing unless B2B_SHARDS > 13. See b2b_integrations_dags.py (shard 0) and docs/ARCHITECTURE.md.
"""

from b2b_integrations.factory.register import register_dags

register_dags(globals(), shard=13)
