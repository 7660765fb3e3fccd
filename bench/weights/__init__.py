"""Weights: the neutral safetensors archive, and the readers and converters of every format the
released models come in (Caffe, Keras HDF5, PyTorch)."""
