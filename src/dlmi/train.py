"""The book's one training loop.

:func:`fit` trains any classifier on in-memory :class:`~dlmi.data.ImageSet` splits:
models, losses, optimisers, schedules and augmentations are arguments, not subclasses.
It returns the model (with the best validation weights restored) and a per-epoch
history table. :func:`predict` and :func:`evaluate` score a model on a whole split.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from dlmi.config import distributed_rank_world, get_settings, seed_everything
from dlmi.data import ImageSet
from dlmi.metrics import classification_report

__all__ = [
    "FitResult",
    "balanced_class_weights",
    "evaluate",
    "fit",
    "make_optimizer",
    "make_scheduler",
    "predict",
    "predict_logits",
    "to_float",
]

Augment = Callable[[torch.Tensor], torch.Tensor]
BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Evaluator = Callable[[nn.Module, ImageSet], dict[str, float]]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` images in [0, 255] -> ``float32`` in [0, 1] (same shape and device)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}; pass the ImageSet's images unchanged")
    return images.float().div_(255.0)


def make_optimizer(name: str, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``"sgd"``, ``"adam"`` or ``"adamw"`` over ``params``."""
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd', 'adam' or 'adamw'")


def make_scheduler(
    kind: str, epochs: int, warmup_epochs: int = 0, milestones: tuple[float, ...] = (0.5, 0.75), gamma: float = 0.1
) -> Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]:
    """A per-epoch learning-rate schedule, as ``optimizer -> scheduler`` for :func:`fit`.

    Args:
        kind: ``"constant"``, ``"step"`` (multiply by ``gamma`` at the given fractions of
            ``epochs``, as in the MedMNIST v2 benchmark) or ``"cosine"`` (decay to zero).
        epochs: Planned number of epochs.
        warmup_epochs: Linear warm-up from 1/10 of the rate over this many epochs first.
    """
    if kind not in ("constant", "step", "cosine"):
        raise ValueError(f"unknown schedule {kind!r}; use 'constant', 'step' or 'cosine'")
    sched = torch.optim.lr_scheduler

    def build(opt: torch.optim.Optimizer) -> sched.LRScheduler:
        rest = max(1, epochs - warmup_epochs)
        if kind == "step":
            main = sched.MultiStepLR(opt, [max(1, round(f * rest)) for f in milestones], gamma)
        elif kind == "cosine":
            main = sched.CosineAnnealingLR(opt, T_max=rest)
        else:
            main = sched.ConstantLR(opt, factor=1.0, total_iters=0)
        if warmup_epochs <= 0:
            return main
        warm = sched.LinearLR(opt, start_factor=0.1, total_iters=warmup_epochs)
        return sched.SequentialLR(opt, [warm, main], milestones=[warmup_epochs])

    return build


def balanced_class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per-class loss weights inversely proportional to class frequency (mean weight 1 over images).

    ``w_c = N / (K * N_c)``, scikit-learn's "balanced" rule: a class half as frequent counts twice as much.
    """
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}); got values from {labels.min()} to {labels.max()}")
    counts = torch.bincount(labels, minlength=n_classes).float()
    if (counts == 0).any():
        raise ValueError(f"class(es) {torch.nonzero(counts == 0).flatten().tolist()} have no examples; cannot weight them")
    return len(labels) / (n_classes * counts)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Raw model outputs for ``uint8`` images ``(N, C, ...)`` in eval mode; returns ``(N, K)`` on the CPU."""
    device = get_settings().device
    model.eval().to(device)
    return torch.cat([model(to_float(batch.to(device))).float().cpu() for batch in images.split(batch_size)])


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities (softmax) for ``uint8`` images ``(N, C, ...)``; returns ``(N, K)`` on the CPU."""
    return torch.softmax(predict_logits(model, images, batch_size), dim=1)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet, loss_fn: nn.Module | None = None, batch_size: int = 512) -> dict[str, float]:
    """Loss over the *whole* split (not one batch) and :func:`~dlmi.metrics.classification_report` metrics."""
    logits = predict_logits(model, data.images, batch_size)
    if not torch.isfinite(logits).all():
        raise FloatingPointError("the model's outputs are NaN or infinite: it diverged; lower the learning rate")
    loss_fn = copy.deepcopy(loss_fn or nn.CrossEntropyLoss()).cpu()  # a copy: the caller's may live on the GPU
    loss = loss_fn(logits, data.labels).item()
    return {"loss": loss, **classification_report(data.labels, torch.softmax(logits, dim=1))}


def _sync_buffers(model: nn.Module, world: int) -> None:
    """Average floating-point buffers (batch-norm running statistics) over the processes, so all keep identical models.

    DistributedDataParallel averages gradients, but each process updates its running
    statistics with its own batches; without this the processes' models would disagree.
    """
    for buffer in model.buffers():
        if buffer.is_floating_point():
            torch.distributed.all_reduce(buffer)
            buffer.div_(world)
        else:
            torch.distributed.broadcast(buffer, src=0)


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: The trained model, with the best validation weights loaded.
        history: One row per epoch: ``epoch, train_loss, train_acc, val_loss, val_acc,
            val_auc, val_macro_f1, lr, seconds``.
        best_epoch: The epoch whose weights were kept.
    """

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int


def fit(
    model: nn.Module,
    train: ImageSet,
    val: ImageSet | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: str = "adam",
    lr: float = 1e-3,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    loss_fn: nn.Module | None = None,
    scheduler: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler] | None = None,
    augment: Augment | None = None,
    batch_loss: BatchLoss | None = None,
    evaluator: Evaluator | None = None,
    monitor: str = "val_auc",
    patience: int | None = None,
    seed: int | None = None,
    checkpoint: Path | None = None,
    amp: bool | None = None,
    progress: bool = False,
) -> FitResult:
    """Train a model with mini-batch gradient descent (a classifier unless told otherwise).

    Every epoch shuffles the training images (in memory), takes a step per batch, then
    scores the *whole* validation split.

    Under ``torchrun`` (after :func:`dlmi.config.init_distributed`) the same call trains
    data-parallel: the model is wrapped in ``DistributedDataParallel``, a
    ``DistributedSampler`` gives each process its share of every epoch's images (``batch_size``
    per process, so the global batch is ``world size * batch_size``), gradients are averaged
    across processes, and every process scores the whole validation split with identical
    weights, so all of them keep the same best epoch. The weights of the epoch with the best
    ``monitor`` value are kept and restored at the end; with ``patience``, training
    stops after that many epochs without improvement.

    Args:
        model: Maps float images ``(B, C, ...)`` in [0, 1] to logits ``(B, K)``.
        train: Training split.
        val: Validation split (``None``: keep the last epoch, no early stopping).
        epochs: Maximum number of passes over ``train``.
        batch_size: Images per step.
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        lr, momentum, weight_decay: Optimiser settings.
        loss_fn: Loss on logits and labels; default cross-entropy.
        scheduler: ``optimizer -> LR scheduler``, stepped once per epoch.
        augment: Batch-wise transform of float images, applied to training batches only.
        batch_loss: For training objectives other than classification, e.g. self-supervised
            ones: ``batch_loss(model, x, y) -> scalar loss`` replaces ``loss_fn(model(x), y)``
            (``x``: the float, augmented batch; ``y`` may be ignored). There is then no
            training accuracy (NaN in the history), and a validation split needs an ``evaluator``.
        evaluator: How to score ``val`` for tasks other than classification, e.g. segmentation:
            ``evaluator(model, val) -> {"loss": ..., "dice": ...}``; every key becomes a
            ``val_<key>`` history column. Default: :func:`evaluate` with ``loss_fn``.
        monitor: History column to select the best epoch (``val_*``; loss is minimised,
            everything else maximised). With an ``evaluator``, any ``val_<key>`` it returns.
        patience: Stop after this many epochs without improvement (``None``: never).
        seed: Seed for batch order and dropout (default ``DLMI_SEED``).
        checkpoint: If given, the best weights are saved there and loaded back
            (``weights_only=True``) at the end.
        amp: Mixed precision (bfloat16 autocast); default on for CUDA, off on the CPU.
        progress: Show a progress bar.

    Returns:
        A :class:`FitResult`.
    """
    monitors = ("val_loss", "val_acc", "val_balanced_acc", "val_macro_f1", "val_auc")
    if batch_loss is not None and loss_fn is not None:
        raise ValueError("batch_loss replaces loss_fn(model(x), y): pass one of them, not both")
    if batch_loss is not None and val is not None and evaluator is None:
        raise ValueError("with batch_loss, a validation split needs an evaluator(model, val) -> dict of metrics (or pass val=None)")
    if val is not None and evaluator is None and monitor not in monitors:
        raise ValueError(f"monitor={monitor!r} is not one of {monitors}")
    settings = get_settings()
    device = settings.device
    seed_everything(settings.seed if seed is None else seed)
    generator = torch.Generator().manual_seed(settings.seed if seed is None else seed)
    model.to(device)
    loss_fn = (loss_fn or nn.CrossEntropyLoss()).to(device)
    opt = make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    sched = scheduler(opt) if scheduler else None
    use_amp = device.type == "cuda" if amp is None else amp
    minimise = monitor.endswith("loss")
    best_value, best_epoch, best_state, waited = np.inf if minimise else -np.inf, 0, None, 0
    x_all, y_all = train.images, train.labels
    rank, world = distributed_rank_world()
    net, sampler = model, None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        from torch.utils.data import DistributedSampler

        net = DistributedDataParallel(model)
        sampler = DistributedSampler(range(len(y_all)), num_replicas=world, rank=rank, shuffle=True,
                                     seed=settings.seed if seed is None else seed)
        torch.manual_seed((settings.seed if seed is None else seed) + rank)  # own augmentations and dropout per process
    classify = batch_loss is None and y_all.ndim == 1  # class labels: training accuracy is defined
    if evaluator is None:
        def evaluator(m: nn.Module, data: ImageSet) -> dict[str, float]:
            return evaluate(m, data, loss_fn)
    rows = []
    for epoch in tqdm(range(1, epochs + 1), disable=not progress or rank > 0, desc="epochs"):
        start = time.perf_counter()
        model.train()
        if sampler is None:
            order = torch.randperm(len(y_all), generator=generator)
        else:
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler))
        total_loss, correct = 0.0, 0
        for idx in order.split(batch_size):
            x = to_float(x_all[idx].to(device, non_blocking=True))
            y = y_all[idx].to(device, non_blocking=True)
            if augment is not None:
                x = augment(x)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                if batch_loss is None:
                    logits = net(x)
                    loss = loss_fn(logits.float(), y)
                else:
                    loss = batch_loss(net, x, y).float()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss.item()} at epoch {epoch}; lower the learning rate (lr={lr})"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
            if classify:
                correct += (logits.argmax(1) == y).sum().item()
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise FloatingPointError(f"the weights became NaN or infinite in epoch {epoch}; lower the learning rate (lr={lr})")
        seen = len(order)
        if world > 1:
            _sync_buffers(model, world)
            # sum loss, hits and images over the processes
            sums = torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(sums)
            total_loss, correct, seen = sums.tolist()
        row = {
            "epoch": epoch,
            "train_loss": total_loss / seen,
            "train_acc": correct / seen if classify else float("nan"),
            "lr": opt.param_groups[0]["lr"],
        }
        if sched is not None:
            sched.step()
        if val is not None:
            try:
                row.update({f"val_{k}": v for k, v in evaluator(model, val).items()})
            except FloatingPointError as err:
                raise FloatingPointError(f"{err} (epoch {epoch}, lr={lr})") from None
            if monitor not in row:
                raise ValueError(f"monitor={monitor!r} is not among the evaluator's outputs {sorted(k for k in row if k.startswith('val_'))}")
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        if val is None:
            continue
        value = row[monitor]
        if (value < best_value) if minimise else (value > best_value):
            best_value, best_epoch, waited = value, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            if checkpoint is not None and rank == 0:
                Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
                torch.save(best_state, checkpoint)
        else:
            waited += 1
            if patience is not None and waited >= patience:
                break
    if best_state is not None:
        if checkpoint is not None and world == 1:
            best_state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(best_state)
    else:
        best_epoch = len(rows)
    return FitResult(model.eval(), pd.DataFrame(rows), best_epoch)
