"""Clients: thin I/O wrappers over Airflow provider hooks (SFTP and object-storage folders, the HTTP API
client and calls, the DB-API hook by connection type, our own API server).

Named clients, not hooks: none is an Airflow hook (no ``conn_type`` of its own, no ``test_connection``);
each takes a connection id and uses the provider's hook for it, so a connection's test button is the
provider's.
"""
