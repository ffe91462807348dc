"""The cosine schedule is torch's CosineAnnealingLR stepped once per epoch, and adding schedules
left the key of every step-decay run as it was."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.spec import Recipe, load_matrix
from bench.spec.schema import teacher_run

HASH = "0123456789abcdef"


@pytest.mark.parametrize("epochs,lr,lr_min", [(10, 0.1, 0.0), (240, 0.05, 1e-4), (1, 0.2, 0.0)])
def test_cosine_is_torchs_cosine_annealing_stepped_once_per_epoch(epochs, lr, lr_min):
    recipe = Recipe(epochs=epochs, lr=lr, schedule="cosine", lr_min=lr_min)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr_min)
    for epoch in range(1, epochs + 1):
        assert recipe.lr_at(epoch) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
        optimizer.step()
        scheduler.step()


def test_step_decay_runs_keep_the_keys_they_had_before_schedules_existed():
    # Literal keys printed by the tree before Recipe.schedule (commit b0ba408) for these runs
    smoke = load_matrix("smoke", data_hash=HASH)
    student = next(run for run in smoke.runs if run.teacher)
    assert student.name == "resnet20->resnet8 kd seed0"
    assert (student.cell_key, student.run_key) == ("ce004806d3788e41", "b16cf5f43e330013")
    assert teacher_run(student.teacher, student).cell_key == "db303298f3ee70d4"
    assert smoke.runs[0].cell_key == "37a1ec794f2c2d0f"


def test_a_cosine_cell_is_its_own_and_ignores_the_step_fields():
    run = next(run for run in load_matrix("smoke", data_hash=HASH).runs if run.teacher)
    cosine = dataclasses.replace(run, recipe=dataclasses.replace(run.recipe, schedule="cosine"))
    assert cosine.cell_key != run.cell_key
    other_milestones = dataclasses.replace(
        cosine, recipe=dataclasses.replace(cosine.recipe, milestones=(1,), lr_decay=0.5)
    )
    assert other_milestones.cell_key == cosine.cell_key
    floor = dataclasses.replace(cosine, recipe=dataclasses.replace(cosine.recipe, lr_min=1e-4))
    assert floor.cell_key != cosine.cell_key
