from b2b_integrations.cli import main

# Only under `python -m b2b_integrations`. Airflow's plugin loader imports every .py under plugins/ when
# plugins/.airflowignore is missing (a copy without its dot-files), under the module name "__main__": a
# bare call here would make every Airflow component run this CLI and exit.
if __spec__ is not None and __spec__.name == "b2b_integrations.__main__":
    raise SystemExit(main())
