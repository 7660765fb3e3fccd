"""The core: errors, records and atomic outputs, run-time plumbing, and the contracts every
backend, trainer and data set implements (docs/architecture.md)."""
