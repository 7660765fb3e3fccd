#!/usr/bin/env python
"""`python cli.py ...` from a checkout: a shim over bench/cli/app.py (installed: `fcn-bench`)."""

import sys

from bench.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
