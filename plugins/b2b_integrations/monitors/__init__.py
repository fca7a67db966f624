"""Alert monitors per instance: pure rules (``rules``), facts from Airflow's metadata DB (``facts``), the
once-only ledger (``ledger``), the messages and their senders (``notify``) and one evaluation pass
(``evaluate``), run on the API server when the monitors DAG asks."""
