"""Pretrained teacher weights: a local file, or torchvision's IMAGENET1K_V1 download."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import nn

from model_zoo.checkpoint import CheckpointError, load_checkpoint
from model_zoo.registry import model_info


def torchvision_weights(name: str) -> Any | None:
    """The torchvision weights enum member registered for `name`, or None if it has none."""
    if name.startswith("timm:"):
        return None
    info = model_info(name)
    if info.pretrained is None:
        return None
    from torchvision.models import get_model_weights

    return get_model_weights(name.removeprefix("torchvision:"))[info.pretrained]


def torchvision_weights_url(name: str) -> str:
    """Where torchvision downloads `name`'s built-in pretrained weights from."""
    weights = torchvision_weights(name)
    if weights is None:
        raise CheckpointError(f"model '{name}' has no built-in pretrained weights")
    return weights.url


def load_pretrained(
    name: str, model: nn.Module, weights_file: str | os.PathLike[str] | None = None
) -> str:
    """Load teacher weights into `model` (built by `create(name, ...)`); return the file's sha256.

    With `weights_file`, that file is loaded strictly. Without it, torchvision models fetch their
    IMAGENET1K_V1 file into torch.hub's cache (downloading only if it is not there yet).
    """
    if weights_file is not None:
        return load_checkpoint(model, weights_file)
    weights = torchvision_weights(name)
    if weights is None:
        raise CheckpointError(
            f"model '{name}' has no built-in pretrained weights; pass a weights file"
        )
    return load_checkpoint(model, _cached_download(weights.url))


def _cached_download(url: str) -> Path:
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # torchvision file names carry a sha256 prefix ("resnet50-0676ba61.pth"); check it.
    found = re.search(r"-([0-9a-f]{6,})$", path.stem)
    hash_prefix = found.group(1) if found else None
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix, progress=True)
    except (URLError, OSError, RuntimeError) as error:
        raise CheckpointError(
            f"could not download {url} ({error}); download it where the network allows "
            "and pass it as the weights file"
        ) from None
    return path
