"""Images per second for one training epoch: the book's in-memory pipeline vs the common pattern.

The common pattern is the ``medmnist`` package's ``Dataset`` (one PIL image per item),
``transforms.ToTensor()`` and a ``DataLoader``. The book's pipeline keeps the whole split
as one uint8 tensor and slices shuffled batches from it (what ``dlmi.train.fit`` does).
Both feed the same model with the same batch size on the same machine, in one run.

    python benchmarks/pipeline.py --dataset pneumoniamnist
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from medmnist import INFO
import medmnist
from PIL import Image
from torch import nn
from torchvision import transforms

from dlmi import data, models
from dlmi.config import get_settings, seed_everything
from dlmi.train import to_float


class PerItemPIL(torch.utils.data.Dataset):
    """The common per-item pattern for datasets the ``medmnist`` package does not load as is
    (MedNIST, or a local subset whose size differs from the official one, which ``len()`` asserts)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def common_dataset(name: str, split: data.ImageSet) -> torch.utils.data.Dataset:
    """``medmnist``'s own Dataset class where it can read the file, else the same per-item PIL path."""
    flag, _, size = name.partition("_")
    to_tensor = transforms.ToTensor()
    if flag in INFO and INFO[flag]["n_samples"][split.split] == len(split):
        path = data.fetch(name).folder
        cls = getattr(medmnist, INFO[flag]["python_class"])
        # 2D: PIL image -> ToTensor; 3D: medmnist returns float arrays in [0, 1], collated as they are
        transform = to_tensor if split.images.ndim == 4 else None
        return cls(split=split.split, transform=transform, root=str(path), size=int(size or 28))
    if split.images.ndim == 5:
        raise ValueError(f"{name}: no per-item reference pipeline for a 3D set other than medmnist's own")
    arrays = split.images.numpy()
    arrays = arrays[:, 0] if arrays.shape[1] == 1 else np.moveaxis(arrays, 1, -1)
    return PerItemPIL(arrays, split.labels.numpy(), to_tensor)


def time_epoch(batches, model: nn.Module | None, device: torch.device) -> float:
    """Seconds for one pass over ``batches`` (data only if ``model`` is None, else forward+backward+step)."""
    opt = torch.optim.Adam(model.parameters(), 1e-3) if model is not None else None
    start = time.perf_counter()
    for x, y in batches():
        x, y = x.to(device).float(), torch.as_tensor(y).reshape(-1).long().to(device)
        if model is not None:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="pneumoniamnist", help="registry name: mednist or a MedMNIST name")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the common pattern")
    args = parser.parse_args()
    settings = get_settings()
    seed_everything()
    split = data.load_split(args.dataset, "train")
    n, device = len(split), settings.device
    common = torch.utils.data.DataLoader(
        common_dataset(args.dataset, split), batch_size=args.batch_size, shuffle=True, num_workers=args.workers
    )

    def in_memory():
        images = split.images.to(device)
        for idx in torch.randperm(n).split(args.batch_size):
            yield to_float(images[idx.to(device)]), split.labels[idx]

    def model():
        seed_everything()
        dims = split.images.ndim - 2  # 2D images or 3D volumes
        return models.SmallCNN(split.images.shape[1], split.n_classes, spatial_dims=dims).to(device)

    print(f"dataset {args.dataset}: {n:,} training images of shape {tuple(split.images.shape[1:])}; device {device}")
    rows = []
    for what, net in [("data only", None), ("data + SmallCNN step", model())]:
        t_common = time_epoch(lambda: iter(common), net, device)
        t_memory = time_epoch(in_memory, model() if net is not None else None, device)
        rows.append((what, n / t_common, n / t_memory, t_common / t_memory))
    print(f"{'one epoch':24s} {'common (img/s)':>15s} {'in-memory (img/s)':>18s} {'speed-up':>9s}")
    for what, a, b, ratio in rows:
        print(f"{what:24s} {a:15,.0f} {b:18,.0f} {ratio:8.1f}x")


if __name__ == "__main__":
    main()
