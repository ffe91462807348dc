"""kdbench's models: the CIFAR-100 KD zoo (32 px) and prefixed ImageNet models (224 px).
Usage: `model = model_zoo.create("resnet32x4", num_classes=100)`, then
`sha256 = model_zoo.load_checkpoint(model, "resnet32x4_vanilla/ckpt_epoch_240.pth")`.
"""

import importlib
import pkgutil

from model_zoo.checkpoint import CheckpointError, load_checkpoint, sha256_file
from model_zoo.describe import describe
from model_zoo.pretrained import load_pretrained, torchvision_weights_url
from model_zoo.registry import (
    ModelError,
    create,
    has_batchnorm,
    input_resolution,
    list_models,
    register_model,
    resolution_range,
)

# Importing a module registers its models: a new model family is one new file here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CheckpointError",
    "ModelError",
    "create",
    "describe",
    "has_batchnorm",
    "input_resolution",
    "resolution_range",
    "list_models",
    "load_checkpoint",
    "load_pretrained",
    "register_model",
    "sha256_file",
    "torchvision_weights_url",
]
