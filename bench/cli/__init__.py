"""The command layer: one click command per module (`command` attribute), registered by
bench/cli/app.py; `python cli.py` and the `fcn-bench` console script both run `app.main`.

Command modules parse options and call the core and backends/; they import frameworks only
inside the command function, so `--help` stays light.
"""
