"""One click command per module (`command` attribute), registered by cli.py.

Command modules parse options and call bench/ and backends/; they import frameworks only inside
the command function, so `cli.py --help` stays light.
"""
