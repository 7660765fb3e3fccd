"""fcn-bench core: framework-free (stdlib, numpy, Pillow, safetensors). Never imports torch or tensorflow."""

__version__ = "0.1.0"
