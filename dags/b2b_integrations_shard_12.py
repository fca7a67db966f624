"""Airflow DAG factory, shard 12: the DAGs of the customers whose id hashes to shard 12 of B2B_SHARDS.

Registers nothing unless B2B_SHARDS > 12. See b2b_integrations_dags.py (shard 0) and docs/ARCHITECTURE.md.
"""

from b2b_integrations.factory.register import register_dags

register_dags(globals(), shard=12)
