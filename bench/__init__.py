"""fcn-bench core: the harness on stdlib, numpy, Pillow and safetensors (frameworks: backends/)."""

__version__ = "0.1.0"
