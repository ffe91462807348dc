"""Size and cost of a model: parameters and FLOPs of one forward pass at its input resolution."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from model_zoo.registry import create, input_resolution


def describe(name: str, num_classes: int = 100) -> dict[str, int | str]:
    """name, resolution, params, flops and macs of `name` for one 3-channel image on CPU.

    `flops` is torch.utils.flop_counter's count (2 per multiply-accumulate of convolutions and
    matrix products; norms, activations and pools are not counted); `macs` = flops // 2, the
    unit most papers call "FLOPs".
    """
    resolution = input_resolution(name)
    model = create(name, num_classes).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, resolution, resolution))
    flops = int(counter.get_total_flops())
    return {
        "name": name,
        "resolution": resolution,
        "params": sum(p.numel() for p in model.parameters()),
        "flops": flops,
        "macs": flops // 2,
    }
