"""Segmentation networks, one file per paper, built by name through :func:`create_network`."""

import importlib

from medseg.nets.registry import NETWORKS, create_network

# Importing a network module registers it. Missing modules are skipped so that a partial checkout works.
_NETWORK_MODULES = (
    "encoders", "unet", "unet_plus_plus", "dunet", "vnet", "segresnet_vae", "patch_cnn", "fcn", "segnet", "deeplabv3plus",
)
for _name in _NETWORK_MODULES:
    try:
        importlib.import_module(f"medseg.nets.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"medseg.nets.{_name}":
            raise

__all__ = ["NETWORKS", "create_network"]
