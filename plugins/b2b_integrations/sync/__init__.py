"""Synchronous flows: a caller POSTs a request, the customer's DAG runs with it, and the caller gets the answer.

* ``protocol.py``: the request side, pure (run ids from Idempotency-Key, ``Prefer: wait``, callback URLs,
  the input schema's field errors, what goes into the run's conf);
* ``outcome.py``: what a run amounts to (result or public error) and how it is told, pure, shared by the
  endpoint, the status URL and the callback;
* ``routes.py``: which customer flows are synchronous, from the include folder;
* ``airflow_runs.py``: the one module that touches Airflow's internals (auth manager, DAG runs, task
  states, XComs in the metadata database);
* ``service.py``: the endpoint's decisions, from plain inputs (FastAPI stays in ``api/sync.py``);
* ``callback.py``: the task that POSTs the signed result to the caller's callback URL.
"""
