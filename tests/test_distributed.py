"""Data-parallel training: dlmi.train.fit runs unchanged under torchrun (DistributedDataParallel, Gloo on the CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dlmi.config import distributed_rank_world, init_distributed
from dlmi.models import SmallCNN

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from dlmi.config import init_distributed
    from dlmi.data import ImageSet
    from dlmi.models import SmallCNN
    from dlmi.train import fit

    rank, world = init_distributed()
    g = torch.Generator().manual_seed(0)                 # the same data in every process
    labels = torch.randint(0, 2, (96,), generator=g)
    images = (torch.rand(96, 1, 16, 16, generator=g) * 120 + 100 * labels[:, None, None, None]).to(torch.uint8)
    data = ImageSet(images, labels, ("a", "b"), "binary-class", "toy", "train", "toy")
    torch.manual_seed(rank)                              # different initial weights: DDP must sync them
    model = SmallCNN(1, 2, widths=(4, 8))
    result = fit(model, data, data, epochs=3, batch_size=8, lr=0.01, seed=0, monitor="val_loss")
    torch.save({"state": result.model.state_dict(), "history": result.history.to_dict("list"),
                "rank": rank, "world": world, "best": result.best_epoch}, f"{sys.argv[1]}/rank{rank}.pt")
    """
)


def test_not_distributed_without_torchrun(monkeypatch):
    """A plain process is rank 0 of 1, and init_distributed explains how to launch one."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed_rank_world() == (0, 1)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed()


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_weights(tmp_path: Path):
    """torchrun --nproc_per_node=2 on the CPU: both ranks finish, with the same (trained) weights and history."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "DLMI_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [(r["rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)]
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    same = lambda h: {k: v for k, v in h.items() if k != "seconds"}  # noqa: E731 (timings differ)
    assert same(ranks[0]["history"]) == same(ranks[1]["history"]) and ranks[0]["best"] == ranks[1]["best"]
    torch.manual_seed(0)
    fresh = SmallCNN(1, 2, widths=(4, 8)).state_dict()  # rank 0's initial weights, which DDP gave every process
    assert any(not torch.equal(a[k], fresh[k]) for k in a if a[k].is_floating_point())
    losses = ranks[0]["history"]["train_loss"]
    assert losses[-1] < losses[0]
