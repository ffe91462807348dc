"""The teacher's knowledge really reaches the student through the KD loss.

A teacher learns labels permuted by a fixed permutation pi; a KD student with w_ce = 0 sees the
true labels only through its (unused) CE term, so it must end up agreeing with pi(y), not with y.
A swapped argument, a missing temperature or a misaligned class axis breaks that.
"""

import shutil
from pathlib import Path

import numpy as np
import torch

import methods
import model_zoo
from bench.data.datasets import cifar, synthetic
from bench.data.loaders import make_loaders
from bench.engine.train import build_optimizer, train_epochs
from bench.spec import DataSpec, Recipe

CLASSES = 10
PI = np.roll(np.arange(CLASSES), 3)  # a fixed permutation with no fixed point


def _permuted_copy(root: Path, target: Path) -> None:
    for split in ("train", "test"):
        arrays = cifar.read_split(root, split, verify=False)
        cifar.write_split(target, split, arrays.images, PI[arrays.labels])
    cifar.write_meta(target, [f"class_{c:03d}" for c in range(CLASSES)])
    shutil.copy(root / synthetic.MARKER, target / synthetic.MARKER)


def _train(student, method, teacher, loaders, epochs, seed):
    recipe = Recipe(epochs=epochs, lr=0.05, milestones=(epochs,))
    optimizer = build_optimizer(student, recipe, torch.device("cpu"))
    torch.manual_seed(seed)
    train_epochs(
        student,
        method,
        teacher,
        loaders,
        recipe,
        optimizer,
        device=torch.device("cpu"),
        on_epoch=lambda *_: None,
    )
    return student.eval()


@torch.no_grad()
def _predictions(model, loaders):
    preds, labels = [], []
    for images, y, _ in loaders.test.epoch(0):
        preds.append(model(images).argmax(1))
        labels.append(y)
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def test_kd_student_follows_a_permuted_teacher(tmp_path):
    config = synthetic.SyntheticConfig(
        classes=CLASSES, train_per_class=100, test_per_class=20, seed=7
    )
    true_root = synthetic.generate(tmp_path / "true", config)
    _permuted_copy(true_root, tmp_path / "permuted")

    def loaders(root):
        data = DataSpec(dataset="synthetic", root=str(root), synthetic={"classes": CLASSES})
        return make_loaders(data, batch_size=64, seed=0, device="cpu", workdir=tmp_path)

    true_loaders, permuted_loaders = loaders(true_root), loaders(tmp_path / "permuted")
    torch.manual_seed(0)
    teacher = _train(
        model_zoo.create("resnet8", num_classes=CLASSES),
        methods.create("ce"),
        None,
        permuted_loaders,
        epochs=4,
        seed=0,
    )
    teacher_pred, permuted_y = _predictions(teacher, permuted_loaders)
    assert (teacher_pred == permuted_y).mean() >= 0.6

    torch.manual_seed(1)
    kd = methods.create("kd", w_ce=0.0, w_kd=1.0)
    student = _train(
        model_zoo.create("resnet8", num_classes=CLASSES),
        kd,
        teacher,
        true_loaders,
        epochs=4,
        seed=1,
    )
    pred, y = _predictions(student, true_loaders)
    chance = 1.0 / CLASSES
    assert (pred == PI[y]).mean() >= 3 * chance
    assert (pred == y).mean() <= 2 * chance
