"""What a result was produced with: versions, device, git SHA."""

from __future__ import annotations

import socket
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import torch

import bench

PACKAGES = ("torch", "torchvision", "timm", "mlflow", "numpy", "ffcv")


@lru_cache(maxsize=1)
def git_sha() -> str:
    root = Path(bench.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--",
                "bench",
                "methods",
                "model_zoo",
            ],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()


def environment_tags(device: torch.device) -> dict[str, str]:
    tags = {
        "kdbench_version": bench.__version__,
        "git_sha": git_sha(),
        "device_type": device.type,
        "device_name": device_name(device),
        "host": socket.gethostname(),
        "torch_threads": str(torch.get_num_threads()),
    }
    for name in PACKAGES:
        tags[f"version.{name}"] = package_version(name)
    tags.update(numerics_tags())
    if device.type == "cuda":
        tags["version.cuda"] = str(torch.version.cuda)
        tags["version.cudnn"] = str(torch.backends.cudnn.version())
    return tags


def apply_precision(precision: str) -> None:
    """TF32 on matmul and cuDNN convolutions only for --precision tf32: PyTorch's own default
    (TF32 convolutions on) would change fp32 numerics on Ampere and later GPUs."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def numerics_tags() -> dict[str, str]:
    """The switches that change floating-point results beside the precision: TF32 on matmul and
    cuDNN convolutions (Ampere and later), cuDNN algorithm choice, deterministic algorithms."""
    flags = {
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    return {key: str(value).lower() for key, value in flags.items()}


@lru_cache(maxsize=1)
def pip_freeze() -> str:
    lines = sorted(
        f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"]
    )
    return "\n".join(lines) + "\n"
