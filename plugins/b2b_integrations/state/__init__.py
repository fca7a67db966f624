"""Durable integration state: processed-file ledger, cursors, delivery ledgers."""
