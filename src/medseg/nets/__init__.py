"""Segmentation networks, one file per paper, built by name through :func:`create_network`."""

# Importing a network module registers it.
from medseg.nets import (  # noqa: F401
    deeplabv3plus,
    dunet,
    encoders,
    fcn,
    litemedsam,
    patch_cnn,
    segnet,
    segresnet_vae,
    unet,
    unet_plus_plus,
    vit_seg,
    vnet,
)
from medseg.nets.registry import NETWORKS, create_network

__all__ = ["NETWORKS", "create_network"]
