"""Tests of dlmi.config: the one module that reads the environment."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dlmi import config
from dlmi.config import get_settings, seed_everything


@pytest.fixture
def no_cuda(monkeypatch):
    """Pretend no CUDA device is present (whatever the machine has)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_defaults_on_cpu(monkeypatch, no_cuda, isolated_env):
    """Without CUDA and with nothing set: quick profile, CPU, no data folder, online, seed 0."""
    monkeypatch.delenv("DLMI_DEVICE")
    s = get_settings()
    assert s.profile == "quick"
    assert s.device == torch.device("cpu")
    assert s.data_dir is None
    assert s.cache_dir == isolated_env.resolve()
    assert s.offline is False
    assert s.seed == 0


def test_default_profile_full_when_cuda_present(monkeypatch):
    """With a CUDA device and nothing set, the device is CUDA and the profile full."""
    monkeypatch.delenv("DLMI_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    s = get_settings()
    assert s.device.type == "cuda"
    assert s.profile == "full"


def test_forced_cpu_gives_quick_profile():
    """DLMI_DEVICE=cpu (set by the fixture) means the quick profile, even on a GPU machine."""
    assert get_settings().profile == "quick"


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_profile_is_honoured(monkeypatch, profile):
    """DLMI_PROFILE overrides the device-based default."""
    monkeypatch.setenv("DLMI_PROFILE", profile)
    assert get_settings().profile == profile


@pytest.mark.parametrize("profile", ["fast", "QUICK", "1"])
def test_invalid_profile(monkeypatch, profile):
    """An unknown profile is a ValueError that names the variable and the bad value."""
    monkeypatch.setenv("DLMI_PROFILE", profile)
    with pytest.raises(ValueError, match="DLMI_PROFILE") as err:
        get_settings()
    assert repr(profile) in str(err.value)


def test_blank_variables_count_as_unset(monkeypatch):
    """Whitespace-only values are ignored, as if the variable were not set."""
    for name in ("DLMI_PROFILE", "DLMI_DATA_DIR", "DLMI_SEED", "DLMI_OFFLINE"):
        monkeypatch.setenv(name, "  ")
    s = get_settings()
    assert (s.profile, s.data_dir, s.seed, s.offline) == ("quick", None, 0, False)


@pytest.mark.parametrize(("profile", "expected"), [("quick", 3), ("full", 30)])
def test_pick(monkeypatch, profile, expected):
    """Settings.pick returns the value of the active profile."""
    monkeypatch.setenv("DLMI_PROFILE", profile)
    assert get_settings().pick(quick=3, full=30) == expected


def test_cuda_requested_without_cuda(monkeypatch, no_cuda):
    """DLMI_DEVICE=cuda on a machine without CUDA is a RuntimeError that says what to do."""
    monkeypatch.setenv("DLMI_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="DLMI_DEVICE=cuda") as err:
        get_settings()
    assert "unset DLMI_DEVICE" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the real absence of CUDA")
def test_cuda_requested_on_this_cpu_machine(monkeypatch):
    """Same as above, without patching torch: this machine really has no CUDA."""
    monkeypatch.setenv("DLMI_DEVICE", "cuda:0")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        get_settings()


def test_data_dir_must_exist(monkeypatch, tmp_path):
    """DLMI_DATA_DIR naming a missing folder is a FileNotFoundError naming the variable."""
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("DLMI_DATA_DIR", str(missing))
    with pytest.raises(FileNotFoundError, match="DLMI_DATA_DIR"):
        get_settings()


def test_data_dir_file_is_not_a_folder(monkeypatch, tmp_path):
    """DLMI_DATA_DIR naming a file (not a folder) is refused too."""
    f = tmp_path / "file.txt"
    f.write_text("x")
    monkeypatch.setenv("DLMI_DATA_DIR", str(f))
    with pytest.raises(FileNotFoundError):
        get_settings()


def test_data_dir_is_resolved(monkeypatch, tmp_path):
    """A relative DLMI_DATA_DIR becomes an absolute path."""
    (tmp_path / "d").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLMI_DATA_DIR", "d")
    assert get_settings().data_dir == (tmp_path / "d").resolve()


def test_cache_dir_default(monkeypatch, tmp_path):
    """Without DLMI_CACHE_DIR the cache is ~/.cache/dlmi."""
    monkeypatch.delenv("DLMI_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert get_settings().cache_dir == (tmp_path / ".cache" / "dlmi").resolve()


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("true", True), ("YES", True), ("0", False), ("no", False)])
def test_offline(monkeypatch, value, offline):
    """DLMI_OFFLINE accepts 1/true/yes (any case); anything else is online."""
    monkeypatch.setenv("DLMI_OFFLINE", value)
    assert get_settings().offline is offline


@pytest.mark.parametrize("seed", ["abc", "1.5", "0x10"])
def test_invalid_seed(monkeypatch, seed):
    """A non-integer DLMI_SEED is a ValueError naming the variable."""
    monkeypatch.setenv("DLMI_SEED", seed)
    with pytest.raises(ValueError, match="DLMI_SEED"):
        get_settings()


def test_seed_from_env(monkeypatch):
    """DLMI_SEED is read as an integer."""
    monkeypatch.setenv("DLMI_SEED", "42")
    assert get_settings().seed == 42


def test_seed_everything_reproducible():
    """The same seed gives the same torch, NumPy and Python random numbers."""
    draws = []
    for _ in range(2):
        assert seed_everything(123) == 123
        draws.append((torch.rand(5), np.random.rand(3), random.random()))
    assert torch.equal(draws[0][0], draws[1][0])
    np.testing.assert_array_equal(draws[0][1], draws[1][1])
    assert draws[0][2] == draws[1][2]
    seed_everything(124)
    assert not torch.equal(torch.rand(5), draws[0][0])


def test_seed_everything_default_reads_env(monkeypatch):
    """Without an argument, seed_everything uses DLMI_SEED."""
    monkeypatch.setenv("DLMI_SEED", "7")
    assert seed_everything() == 7
    a = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(a, torch.rand(3))
    assert torch.are_deterministic_algorithms_enabled()


def test_settings_are_frozen():
    """Settings is an immutable snapshot."""
    s = get_settings()
    with pytest.raises(AttributeError):
        s.profile = "full"  # type: ignore[misc]
    assert isinstance(s.cache_dir, Path)
    assert config.PROFILES == ("quick", "full")
