"""Run under `torchrun --nproc-per-node 2`: every backend's train batches across the ranks are
every index exactly once per epoch (all-gathered), each global batch the single process's, and
sharded evaluation counts each test image once. Prints one JSON line from rank 0."""

import json
import sys
from pathlib import Path

import torch

from bench.data.loaders import make_loaders
from bench.data.sharding import Shard
from bench.engine.distributed import from_environment
from bench.engine.train import evaluate
from bench.spec import parse_data

workdir = Path(sys.argv[1])
group = from_environment("cpu")
data = {"dataset": "synthetic", "synthetic": {"classes": 5, "train_per_class": 21,
                                              "test_per_class": 9}}
report = {}
for backend in ("memory", "torch", "ffcv"):
    spec = parse_data(data | {"backend": backend})
    options = dict(batch_size=16, seed=7, device="cpu", workdir=workdir)
    mine = make_loaders(spec, shard=Shard(group.rank, group.world), **options)
    whole = make_loaders(spec, **options)
    for epoch in (1, 2):
        batches = [indices.tolist() for _, _, indices in mine.train.epoch(epoch)]
        gathered = group.all_gather_object(batches)
        expected = [indices.tolist() for _, _, indices in whole.train.epoch(epoch)]
        together = [sum((ranks[i] for ranks in gathered), []) for i in range(len(expected))]
        flat = sorted(i for batch in together for i in batch)
        report[f"{backend}/epoch{epoch}"] = {
            "same_batches": together == expected,
            "each_once": len(set(flat)) == len(flat) == mine.train_size,
            "count": len(flat),
            "steps": [len(g) for g in gathered],
        }
    tests = group.all_gather_object([i for _, _, idx in mine.test.epoch(0) for i in idx.tolist()])
    expected_test = [i for _, _, idx in whole.test.epoch(0) for i in idx.tolist()]
    report[f"{backend}/test_once"] = sorted(sum(tests, [])) == sorted(expected_test)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5))
    sharded = evaluate(model, mine.test, torch.device("cpu"), group=group)
    single = evaluate(model, whole.test, torch.device("cpu"))
    report[f"{backend}/eval"] = {"count": sharded["count"], "expected": single["count"],
                                 "loss": [sharded["loss"], single["loss"]]}
if group.is_main:
    print(json.dumps(report))
group.close()
