"""The one place that reads the environment: profile, device, seeds and folders.

Every other module asks this one. Nothing else in :mod:`dlmi` looks at environment
variables or decides which device to use.

Environment variables
---------------------
``DLMI_PROFILE``
    ``quick`` (small subsets, few epochs: CI on a CPU) or ``full`` (the GPU build).
    Default: ``full`` when a CUDA device is present, ``quick`` otherwise.
``DLMI_DEVICE``
    Force a device (``cpu``, ``cuda``, ``cuda:1``). Default: CUDA when present.
``DLMI_DATA_DIR``
    A folder holding local copies of the datasets (for example ``../shared/data``).
``DLMI_CACHE_DIR``
    Where downloads, extracted data and trained models are kept.
    Default: ``~/.cache/dlmi``.
``DLMI_OFFLINE``
    ``1`` to never try a download (a missing file is then an immediate error).
``DLMI_SEED``
    The global seed (default 0).

Under ``torchrun``, :func:`init_distributed` also reads the launcher's ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``.
"""

from __future__ import annotations

import os
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

PROFILES = ("quick", "full")


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment-driven settings.

    Attributes:
        profile: ``"quick"`` or ``"full"``.
        device: The torch device computations run on.
        data_dir: Folder with local dataset copies, or ``None``.
        cache_dir: Folder for downloads, extracted data and model weights.
        offline: If true, never attempt a download.
        seed: The global random seed.
    """

    profile: str
    device: torch.device
    data_dir: Path | None
    cache_dir: Path
    offline: bool
    seed: int

    def pick(self, *, quick: T, full: T) -> T:
        """Return ``quick`` or ``full`` depending on the active profile.

        Chapters state their budget once, e.g. ``EPOCHS = cfg.pick(quick=3, full=30)``.
        """
        return quick if self.profile == "quick" else full


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _device(requested: str | None) -> torch.device:
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"DLMI_DEVICE={requested} but no CUDA device is available; unset DLMI_DEVICE to use the CPU"
        )
    return device


def get_settings() -> Settings:
    """Read the settings from the environment (cheap; read afresh on every call).

    Returns:
        A :class:`Settings`.

    Raises:
        ValueError: if ``DLMI_PROFILE`` or ``DLMI_SEED`` has an invalid value.
        FileNotFoundError: if ``DLMI_DATA_DIR`` names a folder that does not exist.
    """
    device = _device(_env("DLMI_DEVICE"))
    profile = _env("DLMI_PROFILE") or ("full" if device.type == "cuda" else "quick")
    if profile not in PROFILES:
        raise ValueError(f"DLMI_PROFILE={profile!r} is not one of {PROFILES}; set it to 'quick' or 'full'")
    data_dir = None
    if (raw := _env("DLMI_DATA_DIR")) is not None:
        data_dir = Path(raw).expanduser().resolve()
        if not data_dir.is_dir():
            raise FileNotFoundError(
                f"DLMI_DATA_DIR={raw} is not a folder; point it at the folder of local dataset copies or unset it"
            )
    cache_dir = Path(_env("DLMI_CACHE_DIR") or Path.home() / ".cache" / "dlmi").expanduser().resolve()
    seed_raw = _env("DLMI_SEED") or "0"
    try:
        seed = int(seed_raw)
    except ValueError:
        raise ValueError(f"DLMI_SEED={seed_raw!r} is not an integer; set it to e.g. 0") from None
    offline = (_env("DLMI_OFFLINE") or "0").lower() in {"1", "true", "yes"}
    return Settings(profile, device, data_dir, cache_dir, offline, seed)


def seed_everything(seed: int | None = None) -> int:
    """Seed Python, NumPy and PyTorch, and ask PyTorch for deterministic kernels.

    Args:
        seed: The seed; ``None`` takes ``DLMI_SEED`` (default 0).

    Returns:
        The seed used.
    """
    if seed is None:
        seed = get_settings().seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    # On a GPU a few kernels (e.g. the NLL inside cross-entropy, adaptive pooling backward)
    # have no deterministic version; warn-only mode would print a UserWarning at each use.
    # The results are correct, only the last digits may vary between GPU runs.
    warnings.filterwarnings("ignore", message=".*does not have a deterministic implementation.*")
    return seed


def distributed_rank_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process: ``(0, 1)`` unless a process group is running."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes, so :func:`dlmi.train.fit` trains data-parallel.

    The backend is NCCL when the configured device is a GPU (each process then uses the GPU
    ``LOCAL_RANK``) and Gloo on the CPU. Call it once at the start of a script launched with
    e.g. ``torchrun --nproc_per_node=2 train.py``.

    Returns:
        ``(rank, world size)``.

    Raises:
        RuntimeError: the script was not started by ``torchrun`` (no ``RANK``/``WORLD_SIZE``).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return distributed_rank_world()
    if _env("RANK") is None or _env("WORLD_SIZE") is None:
        raise RuntimeError("RANK and WORLD_SIZE are not set: start the script with torchrun, e.g. "
                           "`torchrun --nproc_per_node=2 script.py`")
    device = get_settings().device
    if device.type == "cuda":
        torch.cuda.set_device(int(_env("LOCAL_RANK") or 0))
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return distributed_rank_world()
