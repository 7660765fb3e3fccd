"""Input conventions: the per-channel means each data set's network expects, in one place.

Every released FCN takes Caffe's input convention (docs/fidelity.md "Inputs per model"): NCHW,
channels in BGR order (HHA in its file order, log-depth one channel), 0-255, minus a per-channel
mean of its data set. The data readers (bench/data/) subtract these; the model catalogue
(bench/model/zoo.py) lists them per input. The values, channel orders and precisions are the
reference's (REF data layers; docs/fidelity.md "Means per data set").
"""

from __future__ import annotations

import numpy as np

# Per-channel mean of Caffe's ILSVRC-2012 mean image, B, G, R (REF voc_layers.py), *not* the VGG
# team's (103.939, 116.779, 123.68). Kept float64 on purpose: REF subtracts a float64 array from a
# float32 image in place, so each pixel is computed in float64 and rounded once; a float32 mean
# would round the mean first and can differ by one ulp (docs/fidelity.md "Means per data set").
MEAN_BGR = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float64)

# The means as the catalogue lists them (B, G, R unless said otherwise); the data readers of the
# other data sets subtract them as float32 arrays, as REF's layers do.
VOC_MEAN = (104.00699, 116.66877, 122.67892)  # voc-fcn*/net.py, voc_layers.py (MEAN_BGR rounded)
NYUD_COLOR_MEAN = (116.190, 97.203, 92.318)  # nyud_layers.py mean_bgr
NYUD_HHA_MEAN = (132.431, 94.076, 118.477)  # nyud_layers.py mean_hha, the HHA file's order
NYUD_LOG_DEPTH_MEAN = (7.844,)  # nyud_layers.py mean_logd
SIFTFLOW_MEAN = (114.578, 115.294, 108.353)  # siftflow_layers.py
CONTEXT_MEAN = (104.007, 116.669, 122.679)  # pascalcontext_layers.py
ADE_MEAN = (109.5388, 118.6897, 124.6901)  # CSAILVision/sceneparsing demoSegmentation.m


def float32_mean(mean: tuple[float, ...]) -> np.ndarray:
    """A mean as the float32 array REF's data layers subtract (rounded before subtracting)."""
    return np.array(mean, dtype=np.float32)
