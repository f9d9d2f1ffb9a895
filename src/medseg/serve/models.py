"""The models a service offers: name, folder, configuration, and what ``GET /models`` shows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from medseg.errors import MedsegError
from medseg.image import Image
from medseg.model_folder import WEIGHTS_NAME, ModelConfig, load_config
from medseg.preprocessing.color import channels_for_model
from medseg.serve.errors import RequestError


@dataclass
class ServedModel:
    """One model folder under the name the service gives it."""

    name: str
    folder: Path
    config: ModelConfig
    version: str

    def public(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "name": self.name, "labels": dict(cfg.labels), "regions": cfg.regions or {},
            "input_channels": cfg.input_channels, "channel_names": list(cfg.channel_names),
            "spatial_dims": cfg.data_dims, "network": cfg.network, "version": self.version,
            "format_version": cfg.format_version,
        }

    def check_image(self, image: Image) -> None:
        """422 when the image does not fit the model (dimensions, channels)."""
        cfg = self.config
        if image.spatial_dims != cfg.data_dims:
            raise RequestError(422, f"model '{self.name}' takes {cfg.data_dims}D images; the upload is "
                               f"{image.spatial_dims}D")
        if channels_for_model(image, cfg.input_channels).num_channels != cfg.input_channels:
            raise RequestError(422, f"model '{self.name}' expects {cfg.input_channels} channel(s) "
                               f"({', '.join(cfg.channel_names)}); the upload has {image.num_channels}")


def weights_version(folder: Path) -> str:
    """The first 12 hex digits of the SHA-256 of the model's weights: which trained model this is."""
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        return "untrained"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def load_models(folders: Sequence[str | Path]) -> dict[str, ServedModel]:
    """Name → model for the given folders (names from the folder; ``-2``, ``-3``… when two agree)."""
    if not folders:
        raise MedsegError("give at least one model folder to serve")
    models: dict[str, ServedModel] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise MedsegError("no such model folder", folder)
        config = load_config(folder)
        base = folder.resolve().name or "model"
        name, n = base, 1
        while name in models:
            n += 1
            name = f"{base}-{n}"
        models[name] = ServedModel(name, folder.resolve(), config, weights_version(folder))
    return models
