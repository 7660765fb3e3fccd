"""fcn-bench core: framework-free (stdlib, numpy, Pillow, safetensors); imports no framework."""

__version__ = "0.1.0"
