"""Loading weight files safely, with one-line errors a user can act on."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

_SHOWN = 3  # how many offending keys an error message names per kind


class CheckpointError(ValueError):
    """A weight file that is missing, unreadable, unsafe, or does not fit the model."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> str:
    """Load a state_dict file into `model` with strict=True; return the file's sha256.

    Accepts `{"model": sd}` (mdistiller/RepDistiller), `{"state_dict": sd}` or a bare state_dict,
    with or without DataParallel's "module." prefix. Only tensors and plain containers are
    unpickled (weights_only=True), so a file cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    sha256 = sha256_file(path)
    state_dict = _state_dict(_read(path), path)
    model_name = getattr(model, "model_zoo_name", type(model).__name__)
    problems = _mismatches(model.state_dict(), state_dict)
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit {model_name}: {problems}")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise CheckpointError(f"checkpoint {path} does not fit {model_name}: {first}") from None
    return sha256


def _read(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        if "Weights only load failed" not in text:
            first = (text.strip().splitlines() or ["unpickling failed"])[0]
            raise CheckpointError(
                f"checkpoint {path} is not a readable torch file: {first}"
            ) from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            raise CheckpointError(
                f"checkpoint {path} refused as unsafe: unpickling it would call {found.group(1)}; "
                "only tensors and plain containers are loaded"
            ) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        raise CheckpointError(
            f"checkpoint {path} is not a readable torch file, or holds objects other than "
            "tensors and plain containers, which are refused as unsafe"
            + (f" ({detail.group(1).strip()})" if detail else "")
        ) from None
    except Exception as error:  # a foreign file fails inside the unpickler in many ways
        first = (str(error).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(
            f"checkpoint {path} is not a readable torch file ({type(error).__name__} {first})"
            .replace(" )", ")")
        ) from None


def _state_dict(content: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(content, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    if not isinstance(content, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items()
    ):
        found = (
            f"top-level keys {sorted(map(str, content))[:_SHOWN]}"
            if isinstance(content, Mapping)
            else f"a {type(content).__name__}"
        )
        raise CheckpointError(
            f"checkpoint {path} holds no state_dict (expected {{'model': ...}}, "
            f"{{'state_dict': ...}} or a dict of tensors; found {found})"
        )
    return {k.removeprefix("module."): v for k, v in content.items()}


def _mismatches(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str:
    """'' when keys and shapes agree, else a one-line summary of the first differences."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {list(found[k].shape)} in file vs {list(v.shape)} in model"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    parts = []
    for label, items in (
        ("shape mismatch", shapes),
        ("missing keys", missing),
        ("unexpected keys", unexpected),
    ):
        if items:
            more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
            parts.append(f"{label} ({len(items)}): {', '.join(items[:_SHOWN])}{more}")
    return "; ".join(parts)
