"""Building blocks shared by the networks (dimension-agnostic, MONAI style: one class for 2D and 3D)."""

from medseg.nets.layers.conv import (
    ConvNormAct,
    DoubleConv,
    conv_type,
    crop_to,
    make_activation,
    make_norm,
    pad_to_multiple,
    pool_type,
    transposed_conv_type,
)

__all__ = [
    "ConvNormAct",
    "DoubleConv",
    "conv_type",
    "crop_to",
    "make_activation",
    "make_norm",
    "pad_to_multiple",
    "pool_type",
    "transposed_conv_type",
]
