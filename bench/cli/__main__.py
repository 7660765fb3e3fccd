"""`python -m bench.cli ...`: the same commands as `fcn-bench` and `python cli.py`."""

import sys

from bench.cli.app import main

sys.exit(main())
