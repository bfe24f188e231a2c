"""Tests of dlmi.data: the registry, fetching and checking files, and the loaders.

Error paths use small fake files in ``tmp_path`` (the package itself never falls back to
fake data); loader tests use the real copies in the ``shared_data`` folder.
"""

from __future__ import annotations

import csv
import http.client
import io
import re
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from medmnist import INFO
from PIL import Image

from conftest import md5_bytes, require
from dlmi import data
from dlmi.data import (
    MEDMNIST_V2_RESULTS,
    REGISTRY,
    ChecksumError,
    DatasetNotFoundError,
    ImageSet,
    UnknownDatasetError,
    convert_dsb2018,
    fetch,
    get_spec,
    licence_table,
    load_medmnist,
    load_mednist,
    load_ms_lesion,
    md5sum,
    medmnist_v2_table,
)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
NON_MEDMNIST = ("mednist", "nuclei_dsb2018", "ms_lesion", "brats_sample", "dicom_samples")


def medmnist_names() -> list[tuple[str, str, int]]:
    """(registry name, flag, size) for every MedMNIST file that medmnist.INFO offers."""
    out = []
    for flag, info in INFO.items():
        for size in (28, 64, 128, 224):
            suffix = "" if size == 28 else f"_{size}"
            if f"url{suffix}" in info:
                out.append((f"{flag}{suffix}", flag, size))
    return out


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize(("name", "flag", "size"), medmnist_names(), ids=[n for n, _, _ in medmnist_names()])
def test_registry_has_every_medmnist_file(name, flag, size):
    """Every MedMNIST set and size in INFO is registered with INFO's URL and MD5."""
    suffix = "" if size == 28 else f"_{size}"
    spec = get_spec(name)
    (remote,) = spec.files
    assert remote.path == f"{name}.npz"
    assert remote.url == INFO[flag][f"url{suffix}"]
    assert remote.md5 == INFO[flag][f"MD5{suffix}"]
    assert spec.folder == "medmnist"
    assert spec.licence == INFO[flag]["license"]


def test_registry_medmnist_entries_are_exactly_infos():
    """No MedMNIST entry beyond what INFO offers (e.g. no 3D set at 128 px)."""
    registered = {n for n, s in REGISTRY.items() if s.folder == "medmnist"}
    assert registered == {n for n, _, _ in medmnist_names()}
    assert "vesselmnist3d_64" in registered and "vesselmnist3d_128" not in registered


@pytest.mark.parametrize("name", NON_MEDMNIST)
def test_registry_has_book_datasets(name):
    """The non-MedMNIST datasets of the book are registered under their names."""
    assert get_spec(name).name == name


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_spec_is_complete(name):
    """Licence, citation, source; 32-hex MD5s; https URLs (or None with instructions)."""
    spec = REGISTRY[name]
    assert spec.name == name
    assert spec.licence.strip() and spec.citation.strip() and spec.source.strip() and spec.description.strip()
    assert spec.files, "a dataset without files"
    for remote in spec.files:
        assert HEX32.match(remote.md5), remote
        assert remote.local_md5 is None or HEX32.match(remote.local_md5), remote
        if remote.url is None:
            assert spec.how_to_get, f"{name}/{remote.path} has no URL and no how_to_get"
        else:
            assert remote.url.startswith("https://"), remote.url
    if any(r.local_md5 for r in spec.files):
        assert spec.local_copy, "a documented local copy must say what it changes"


def test_documented_local_copies():
    """The local copies of the shared data folder are registered with their MD5s."""
    assert REGISTRY["pathmnist"].files[0].local_md5 == "e87a76a10a0f4a4cffcfcbce8277b5d0"
    assert REGISTRY["mednist"].files[0].local_md5 == "1afdbfaf5a71153b4609d4a899e82759"
    assert REGISTRY["pneumoniamnist"].files[0].local_md5 is None


@pytest.mark.parametrize("name", ["pathmnist_32", "mednist2", "", "PathMNIST"])
def test_unknown_dataset(name):
    """An unknown name is an UnknownDatasetError (a KeyError) listing the known names."""
    with pytest.raises(UnknownDatasetError) as err:
        get_spec(name)
    msg = str(err.value)
    assert isinstance(err.value, KeyError)
    assert repr(name) in msg
    for known in ("pathmnist", "mednist", "nuclei_dsb2018", "ms_lesion", "brats_sample", "dicom_samples"):
        assert known in msg
    assert "pathmnist_64" not in msg  # sizes are summarised, not listed
    with pytest.raises(UnknownDatasetError):
        fetch(name)


def test_licence_table():
    """One MedMNIST row plus one per other dataset, every field filled in."""
    rows = licence_table()
    assert len(rows) == 1 + len(NON_MEDMNIST)
    assert {r["dataset"] for r in rows[1:]} == set(NON_MEDMNIST)
    for row in rows:
        assert set(row) == {"dataset", "what", "licence", "cite"}
        assert all(isinstance(v, str) and v.strip() for v in row.values()), row


# --------------------------------------------------------------------------- fetching: error paths


def test_md5sum(tmp_path):
    """md5sum agrees with hashlib, also for files larger than one read chunk."""
    payload = bytes(range(256)) * 5000  # > 1 MiB
    f = tmp_path / "x.bin"
    f.write_bytes(payload)
    assert md5sum(f) == md5_bytes(payload)


def test_missing_file_offline(fake_data_dir, isolated_env):
    """A missing file with DLMI_OFFLINE=1: one line naming the file, the URL and DLMI_DATA_DIR."""
    with pytest.raises(DatasetNotFoundError) as err:
        fetch("pneumoniamnist")
    msg = str(err.value)
    assert "\n" not in msg
    assert "pneumoniamnist.npz" in msg
    assert INFO["pneumoniamnist"]["url"] in msg
    assert "DLMI_DATA_DIR" in msg
    assert "DLMI_OFFLINE=1" in msg
    assert str(fake_data_dir.root) in msg and str(isolated_env) in msg  # where it looked
    assert isinstance(err.value, FileNotFoundError)


def test_missing_file_without_url_gives_instructions(monkeypatch, tmp_path):
    """A file with no download address (BraTS): the error gives the how-to-get text, no download tried."""

    def no_network(*args, **kwargs):
        raise AssertionError("fetch must not try to download a file without URL")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetNotFoundError) as err:
        fetch("brats_sample")
    msg = str(err.value)
    assert "no automatic download" in msg
    assert REGISTRY["brats_sample"].how_to_get in msg
    assert "BraTS20_Training_002_flair.nii.gz" in msg


def test_wrong_content_is_refused(fake_data_dir):
    """A file whose MD5 matches neither the official nor a local copy: ChecksumError with the expected MD5."""
    path = fake_data_dir.write("medmnist/pneumoniamnist.npz", b"not the real file")
    with pytest.raises(ChecksumError) as err:
        fetch("pneumoniamnist")
    msg = str(err.value)
    assert INFO["pneumoniamnist"]["MD5"] in msg
    assert md5_bytes(b"not the real file") in msg
    assert str(path) in msg
    assert isinstance(err.value, ValueError)
    assert path.exists(), "a file in the data folder is the user's: never delete it"


def test_official_copy_is_accepted(fake_data_dir, fake_spec):
    """A file with the official MD5 is found in the data folder and called official."""
    spec = fake_spec(b"official bytes")
    path = fake_data_dir.write("fake/fake.bin", b"official bytes")
    got = fetch("fake_set")
    assert got.paths == {"fake.bin": path}
    assert got.note == "official files"
    assert got.folder == path.parent
    assert got.spec == spec


def test_documented_local_copy_is_accepted(fake_data_dir, fake_spec):
    """A file with the documented local MD5 is accepted, and the note says which copy it is."""
    fake_spec(b"official bytes", local=b"subset bytes")
    fake_data_dir.write("fake/fake.bin", b"subset bytes")
    got = fetch("fake_set")
    assert got.note.startswith("documented local copy")
    assert "the test's local subset" in got.note


def test_data_dir_comes_before_cache(fake_data_dir, fake_spec, isolated_env):
    """The data folder is searched first, then the cache."""
    fake_spec(b"official bytes")
    cached = isolated_env / "fake" / "fake.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"official bytes")
    assert fetch("fake_set").paths["fake.bin"] == cached
    local = fake_data_dir.write("fake/fake.bin", b"official bytes")
    assert fetch("fake_set").paths["fake.bin"] == local


class FakeResponse(io.BytesIO):
    """What urlopen returns: a readable context manager."""


@pytest.fixture
def online(monkeypatch, fresh_caches):
    """No data folder, downloads allowed, urlopen replaced: returns the list of requested URLs."""
    monkeypatch.delenv("DLMI_DATA_DIR", raising=False)
    monkeypatch.delenv("DLMI_OFFLINE", raising=False)
    calls: list[str] = []

    def serve(payload: bytes | Exception):
        def urlopen(url, timeout=None):
            calls.append(url)
            if isinstance(payload, Exception):
                raise payload
            return FakeResponse(payload)

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    return calls, serve


def test_download_failure(online, fake_spec, isolated_env):
    """A failed download is a DatasetNotFoundError naming the URL; no file (partial or not) is left."""
    calls, serve = online
    fake_spec(b"official bytes")
    serve(urllib.error.URLError("no route to host"))
    with pytest.raises(DatasetNotFoundError) as err:
        fetch("fake_set")
    msg = str(err.value)
    assert calls == ["https://example.org/fake.bin"]
    assert "https://example.org/fake.bin" in msg and "no route to host" in msg and "DLMI_DATA_DIR" in msg
    assert "\n" not in msg
    folder = isolated_env / "fake"
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError("connection reset by peer"),
        TimeoutError("the read operation timed out"),
        http.client.IncompleteRead(b"offi", 10),  # server closed the connection early
    ],
    ids=["reset", "timeout", "incomplete-read"],
)
def test_download_interrupted_leaves_no_partial_file(online, fake_spec, isolated_env, monkeypatch, error):
    """A connection that breaks mid-file is a DatasetNotFoundError and leaves neither the file nor a .part file."""
    fake_spec(b"official bytes")

    class Broken(io.BytesIO):
        def read(self, *args):
            if self.tell() == 0:
                return super().read(4)
            raise error

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken(b"official bytes"))
    with pytest.raises(DatasetNotFoundError, match="https://example.org/fake.bin"):
        fetch("fake_set")
    assert list((isolated_env / "fake").iterdir()) == []


def test_download_success(online, fake_spec, isolated_env):
    """A download is saved in the cache, verified, and found there next time without downloading."""
    calls, serve = online
    fake_spec(b"official bytes")
    serve(b"official bytes")
    got = fetch("fake_set")
    target = isolated_env / "fake" / "fake.bin"
    assert got.paths["fake.bin"] == target
    assert target.read_bytes() == b"official bytes"
    assert got.note == "official files"
    assert not target.with_name("fake.bin.part").exists()
    fetch("fake_set")
    assert len(calls) == 1, "the cached copy must be reused"


def test_download_with_wrong_bytes(online, fake_spec, isolated_env):
    """Downloaded bytes with the wrong MD5: ChecksumError, and the bad file is removed from the cache."""
    calls, serve = online
    fake_spec(b"official bytes")
    serve(b"tampered bytes")
    with pytest.raises(ChecksumError, match=md5_bytes(b"official bytes")):
        fetch("fake_set")
    assert not (isolated_env / "fake" / "fake.bin").exists()


def test_offline_never_downloads(online, fake_spec, monkeypatch):
    """DLMI_OFFLINE=1 makes a missing file an immediate error, without touching the network."""
    calls, serve = online
    fake_spec(b"official bytes")
    serve(b"official bytes")
    monkeypatch.setenv("DLMI_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="DLMI_OFFLINE=1"):
        fetch("fake_set")
    assert calls == []


# --------------------------------------------------------------------------- MedNIST decoding (synthetic tarball)


def mednist_tarball(per_class: dict[str, int], shape=(64, 64)) -> bytes:
    """A MedNIST-layout tar.gz, ``MedNIST/<class>/<id>.jpeg``, with constant-grey images."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for c, (cls, n) in enumerate(sorted(per_class.items())):
            for i in range(n):
                jpeg = io.BytesIO()
                Image.fromarray(np.full(shape, 40 * c + i % 3, np.uint8)).save(jpeg, format="JPEG", quality=100)
                info = tarfile.TarInfo(f"MedNIST/{cls}/{i:06d}.jpeg")
                info.size = len(jpeg.getvalue())
                tar.addfile(info, io.BytesIO(jpeg.getvalue()))
    return buf.getvalue()


@pytest.fixture
def fake_mednist(fake_data_dir, monkeypatch):
    """Write a synthetic MedNIST tarball and register its MD5 as the documented local copy."""

    def make(per_class: dict[str, int], shape=(64, 64)) -> Path:
        payload = mednist_tarball(per_class, shape)
        path = fake_data_dir.write("mednist/MedNIST.tar.gz", payload)
        spec = REGISTRY["mednist"]
        remote = replace(spec.files[0], local_md5=md5_bytes(payload))
        monkeypatch.setitem(REGISTRY, "mednist", replace(spec, files=(remote,)))
        return path

    return make


def test_mednist_decoding_and_split(fake_mednist, isolated_env):
    """Classes sorted by name, 70/15/15 per class, images (N, 1, 64, 64) uint8, decoded cache written."""
    path = fake_mednist({"B": 20, "A": 40})
    sets = {s: load_mednist(s) for s in ("train", "val", "test")}
    assert [len(sets[s]) for s in ("train", "val", "test")] == [42, 9, 9]
    np.testing.assert_array_equal(sets["train"].class_counts(), [28, 14])
    np.testing.assert_array_equal(sets["val"].class_counts(), [6, 3])
    for s in sets.values():
        assert s.classes == ("A", "B")
        assert s.images.dtype == torch.uint8 and s.images.shape[1:] == (1, 64, 64)
        assert s.labels.dtype == torch.int64
        assert "documented local copy" in s.note
    assert (isolated_env / "mednist" / f"decoded-{md5sum(path)}.npz").is_file()


def test_mednist_decoded_cache_is_reused(fake_mednist, isolated_env):
    """A second process (lru cache cleared) reads the decoded .npz instead of the JPEGs."""
    fake_mednist({"A": 10, "B": 10})
    first = load_mednist("train")
    data._mednist_arrays.cache_clear()
    (cached,) = (isolated_env / "mednist").glob("decoded-*.npz")
    with np.load(cached) as npz:
        stored = npz["images"]
    np.testing.assert_array_equal(stored[:1].shape, (1, 64, 64))
    second = load_mednist("train")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_mednist_wrong_image_size(fake_mednist):
    """A tarball with images that are not 64x64 is refused with a ValueError."""
    fake_mednist({"A": 3, "B": 3}, shape=(32, 32))
    with pytest.raises(ValueError, match="64x64"):
        load_mednist("train")


def test_mednist_empty_tarball(fake_mednist):
    """A tarball without MedNIST/<class>/<image>.jpeg files is refused with a ValueError."""
    fake_mednist({})
    with pytest.raises(ValueError, match="MedNIST"):
        load_mednist("train")


# --------------------------------------------------------------------------- ImageSet (synthetic)


def make_set(counts: tuple[int, ...]) -> ImageSet:
    """An ImageSet whose image i holds the value i mod 256 (so subsets can be traced)."""
    labels = torch.cat([torch.full((c,), k, dtype=torch.int64) for k, c in enumerate(counts)])
    images = (torch.arange(len(labels)) % 256).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).contiguous()
    return ImageSet(images, labels, tuple(f"c{k}" for k in range(len(counts))), "multi-class", "toy", "train", "toy")


@pytest.mark.parametrize(
    ("counts", "n"),
    [
        ((1400,) * 6, 600),
        ((1400,) * 6, 100),
        ((1400,) * 6, 20),  # 20/6 = 3.33 per class
        ((300, 200, 100), 50),
        ((1214, 3494), 100),
        ((500, 500, 500), 10),
    ],
    ids=["6x1400-600", "6x1400-100", "6x1400-20", "300-200-100-50", "1214-3494-100", "3x500-10"],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subset_size_and_stratification(counts, n, seed):
    """subset(n) has exactly n images, and every class is within one image of its share."""
    full = make_set(counts)
    sub = full.subset(n, seed=seed)
    assert len(sub) == n, f"subset({n}) returned {len(sub)} images, per class {sub.class_counts().tolist()}"
    share = n * np.asarray(counts) / sum(counts)
    assert np.all(np.abs(sub.class_counts() - share) < 1 + 1e-9), (sub.class_counts(), share)


def test_subset_deterministic_and_a_real_subset():
    """Same seed, same subset; another seed, another subset; images keep their labels."""
    full = make_set((60, 40))
    a, b, c = full.subset(20, seed=3), full.subset(20, seed=3), full.subset(20, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    ids = a.images[:, 0, 0, 0].long()
    assert torch.equal(full.labels[ids], a.labels)
    assert len(set(ids.tolist())) == len(ids), "no image twice"
    assert "stratified subset of 20" in a.note


def test_repeat_to_cycles_the_images():
    """repeat_to(n) cycles through the images in order, labels follow, and a large enough split is unchanged."""
    small = make_set((2, 1))
    big = small.repeat_to(7)
    assert len(big) == 7 and big.images[:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert big.labels.tolist() == [0, 0, 1, 0, 0, 1, 0] and "repeated to 7" in big.note
    assert small.repeat_to(3) is small and small.repeat_to(1) is small
    with pytest.raises(ValueError, match="empty"):
        ImageSet(small.images[:0], small.labels[:0], small.classes, "multi-class", "toy", "train", "").repeat_to(5)


@pytest.mark.parametrize("n", [None, 100, 101, 10_000])
def test_subset_of_everything_is_self(n):
    """n None or >= len returns the same object."""
    full = make_set((60, 40))
    assert full.subset(n) is full


@pytest.mark.parametrize("n", [0, -5])
def test_subset_size_must_be_positive(n):
    """n <= 0 is a ValueError."""
    with pytest.raises(ValueError, match="positive"):
        make_set((6, 4)).subset(n)
    with pytest.raises(ValueError, match="positive"):
        make_set((6, 4)).subset_index(n)


def test_subset_index_names_the_subset():
    """subset_index gives the sorted positions of exactly the images subset() keeps."""
    full = make_set((60, 40))
    index = full.subset_index(20, seed=3)
    assert index.dtype == np.int64 and np.all(np.diff(index) > 0)
    sub = full.subset(20, seed=3)
    assert torch.equal(full.images[torch.from_numpy(index)], sub.images)
    assert full.subset_index(None).tolist() == list(range(100))


def test_content_hash_depends_on_pixels_and_labels_only():
    """Same content, same hash (whatever the name); one changed pixel or label, another hash."""
    from dlmi.data import content_hash

    full = make_set((6, 4))
    assert content_hash(full) == content_hash(replace(full, name="renamed", note="another note"))
    pixels = full.images.clone()
    pixels[0, 0, 0, 0] += 1
    assert content_hash(replace(full, images=pixels)) != content_hash(full)
    assert content_hash(replace(full, labels=full.labels.flip(0))) != content_hash(full)


@pytest.mark.parametrize(("batch_size", "sizes"), [(4, [4, 4, 2]), (10, [10]), (64, [10])])
def test_loader_batches(batch_size, sizes):
    """The loader yields (image, label) batches of the right sizes and dtypes."""
    full = make_set((6, 4))
    batches = list(full.loader(batch_size=batch_size))
    assert [len(y) for _, y in batches] == sizes
    x, y = batches[0]
    assert x.shape == (sizes[0], 1, 2, 2) and x.dtype == torch.uint8 and y.dtype == torch.int64


def test_loader_shuffle_is_seeded():
    """Shuffled order depends on the seed only; without shuffle the order is kept."""
    full = make_set((30, 20))
    order = lambda **kw: torch.cat([x[:, 0, 0, 0] for x, _ in full.loader(batch_size=8, **kw)])  # noqa: E731
    assert torch.equal(order(), full.images[:, 0, 0, 0])
    assert torch.equal(order(shuffle=True, seed=5), order(shuffle=True, seed=5))
    assert not torch.equal(order(shuffle=True, seed=5), order(shuffle=True, seed=6))
    assert sorted(order(shuffle=True).tolist()) == sorted(full.images[:, 0, 0, 0].tolist())


def test_class_counts_multilabel():
    """For multi-label (N, K) labels, class_counts counts positives per class."""
    labels = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.float32)
    s = ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), labels, ("a", "b", "c"), "multi-label, binary-class", "t", "train", "")
    np.testing.assert_array_equal(s.class_counts(), [2, 1, 1])
    assert s.n_classes == 3


# --------------------------------------------------------------------------- convert_dsb2018 (synthetic official layout)


def write_case(stage: Path, case: str, rgb: np.ndarray, masks: list[np.ndarray]) -> None:
    """One case in the official layout: an RGBA image and one binary PNG per nucleus."""
    (stage / case / "images").mkdir(parents=True)
    (stage / case / "masks").mkdir()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(stage / case / "images" / f"{case}.png")
    for k, m in enumerate(masks):
        Image.fromarray((m * 255).astype(np.uint8)).save(stage / case / "masks" / f"mask{k:02d}.png")


def box(shape, r0, r1, c0, c1) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[r0:r1, c0:c1] = 1
    return m


@pytest.fixture
def dsb_converted(tmp_path):
    """Convert two synthetic cases: 'agrey' (grey RGBA, 2 nuclei) and 'bcolour' (colour, 3 nuclei)."""
    stage = tmp_path / "stage1_train"
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    write_case(stage, "agrey", np.dstack([grey] * 3), [box((12, 16), 0, 3, 0, 4), box((12, 16), 5, 8, 5, 9)])
    colour = rng.integers(0, 256, (10, 8, 3), dtype=np.uint8)
    write_case(stage, "bcolour", colour, [box((10, 8), 0, 2, 0, 2), box((10, 8), 4, 6, 4, 6), box((10, 8), 8, 10, 0, 8)])
    dest = tmp_path / "converted"
    convert_dsb2018(stage, dest)
    return dest, grey, colour


def test_convert_dsb2018_images(dsb_converted):
    """Grey RGBA images become 8-bit greyscale, colour ones RGB; pixels unchanged."""
    dest, grey, colour = dsb_converted
    with Image.open(dest / "images" / "agrey.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), grey)
    with Image.open(dest / "images" / "bcolour.png") as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), colour)


def test_convert_dsb2018_masks(dsb_converted):
    """Masks become one 16-bit instance-label map: 0 background, k for the k-th mask file."""
    dest, _, _ = dsb_converted
    with Image.open(dest / "masks" / "agrey.png") as im:
        label = np.asarray(im)
    assert label.dtype == np.uint16
    assert label.shape == (12, 16)
    assert set(np.unique(label)) == {0, 1, 2}
    assert (label[0:3, 0:4] == 1).all() and (label[5:8, 5:9] == 2).all()
    assert (label > 0).sum() == 12 + 12
    with Image.open(dest / "masks" / "bcolour.png") as im:
        label = np.asarray(im)
    assert set(np.unique(label)) == {0, 1, 2, 3}
    assert (label[8:10, :] == 3).all()


def test_convert_dsb2018_index(dsb_converted):
    """index.csv: a header and one CRLF row per image with size, channels, count, foreground fraction."""
    dest, _, _ = dsb_converted
    raw = (dest / "index.csv").read_bytes()
    assert raw.count(b"\r\n") == 3 and raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    with open(dest / "index.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image_id", "height", "width", "channels", "n_nuclei", "foreground_fraction"]
    assert rows[1] == ["agrey", "12", "16", "1", "2", f"{24 / 192:.4f}"]
    assert rows[2] == ["bcolour", "10", "8", "3", "3", f"{(4 + 4 + 16) / 80:.4f}"]


def test_convert_dsb2018_md5sums(dsb_converted):
    """MD5SUMS lists every image and mask, and each line verifies."""
    dest, _, _ = dsb_converted
    lines = (dest / "MD5SUMS").read_text().splitlines()
    listed = [line.split(maxsplit=1)[1] for line in lines]
    assert listed == ["images/agrey.png", "images/bcolour.png", "masks/agrey.png", "masks/bcolour.png"]
    for line in lines:
        md5, rel = line.split(maxsplit=1)
        assert md5_bytes((dest / rel).read_bytes()) == md5
    data._check_manifest(dest, "MD5SUMS")  # the package's own check agrees


# --------------------------------------------------------------------------- real data


def test_pneumoniamnist(shared_data):
    """The official PneumoniaMNIST: (N, 1, 28, 28) uint8, int64 labels in {0, 1}, official sizes."""
    require(shared_data, "medmnist/pneumoniamnist.npz")
    sizes = {}
    for split in ("train", "val", "test"):
        s = load_medmnist("pneumoniamnist", split)
        sizes[split] = len(s)
        assert s.images.shape == (len(s), 1, 28, 28)
        assert s.images.dtype == torch.uint8
        assert s.labels.dtype == torch.int64 and s.labels.shape == (len(s),)
        assert set(s.labels.unique().tolist()) == {0, 1}
        assert s.classes == ("normal", "pneumonia")
        assert s.task == "binary-class" and s.split == split and s.name == "pneumoniamnist"
        assert "official" in s.note and "local copy" not in s.note
    assert sizes == {"train": 4708, "val": 524, "test": 624}
    assert fetch("pneumoniamnist").note == "official files"


def test_pathmnist_local_subset(shared_data):
    """PathMNIST train is the documented 25,001-image subset; val is complete; RGB channels first."""
    require(shared_data, "medmnist/pathmnist.npz")
    train = load_medmnist("pathmnist", "train")
    assert train.images.shape == (25_001, 3, 28, 28)
    assert train.n_classes == 9
    assert "documented local copy" in train.note and "25,001" in train.note and "89,996" in train.note
    assert fetch("pathmnist").note.startswith("documented local copy")
    assert (train.class_counts() > 0).all()
    val = load_medmnist("pathmnist", "val")
    assert len(val) == 10_004 and "all 10,004 official" in val.note


@pytest.mark.parametrize(("size", "side"), [(28, 28), (64, 64)])
def test_vesselmnist3d(shared_data, size, side, fresh_caches):
    """VesselMNIST3D at 28 and 64 px: (N, 1, D, H, W) uint8 volumes."""
    require(shared_data, f"medmnist/vesselmnist3d{'' if size == 28 else '_64'}.npz")
    s = load_medmnist("vesselmnist3d", "val", size=size)
    assert s.images.shape == (191, 1, side, side, side)
    assert s.images.dtype == torch.uint8
    assert s.name == ("vesselmnist3d" if size == 28 else "vesselmnist3d_64")


def test_medmnist_unavailable_size():
    """A size the registry lacks (3D at 128) is an UnknownDatasetError."""
    with pytest.raises(UnknownDatasetError):
        load_medmnist("vesselmnist3d", size=128)


@pytest.mark.parametrize("loader", [lambda s: load_medmnist("pneumoniamnist", s), load_mednist])
@pytest.mark.parametrize("split", ["training", "valid", "all", ""])
def test_invalid_split(loader, split):
    """An unknown split is a ValueError before anything is read."""
    with pytest.raises(ValueError, match="split must be one of"):
        loader(split)


def test_mednist_real(shared_data):
    """MedNIST local copy: 70/15/15 of each class, 6 classes, (N, 1, 64, 64); the splits partition the data."""
    require(shared_data, "mednist/MedNIST.tar.gz")
    sets = {s: load_mednist(s) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in sets.items()} == {"train": 8400, "val": 1800, "test": 1800}
    for split, per_class in (("train", 1400), ("val", 300), ("test", 300)):
        s = sets[split]
        assert s.classes == ("AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT")
        assert s.images.shape == (len(s), 1, 64, 64) and s.images.dtype == torch.uint8
        np.testing.assert_array_equal(s.class_counts(), [per_class] * 6)
        assert "documented local copy" in s.note
    # together the three splits are exactly all images, each once
    path = fetch("mednist").paths["MedNIST.tar.gz"]
    all_images, _, _ = data._mednist_arrays(path, md5sum(path))
    joined = torch.cat([sets[s].images[:, 0] for s in ("train", "val", "test")]).numpy()
    as_rows = lambda a: np.sort(a.reshape(len(a), -1).view(f"V{64 * 64}").ravel())  # noqa: E731
    assert len(joined) == len(all_images)
    np.testing.assert_array_equal(as_rows(joined), as_rows(all_images))


def test_mednist_split_is_deterministic(shared_data, monkeypatch, fresh_caches):
    """The split does not depend on DLMI_SEED, nor on a fresh decode."""
    require(shared_data, "mednist/MedNIST.tar.gz")
    a = load_mednist("test")
    data._mednist_arrays.cache_clear()
    monkeypatch.setenv("DLMI_SEED", "99")
    b = load_mednist("test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_subset_of_real_mednist(shared_data):
    """A stratified subset of the real MedNIST keeps the class balance."""
    require(shared_data, "mednist/MedNIST.tar.gz")
    sub = load_mednist("train").subset(600, seed=0)
    assert len(sub) == 600
    np.testing.assert_array_equal(sub.class_counts(), [100] * 6)


def test_loader_real(shared_data):
    """ImageSet.loader over PneumoniaMNIST gives (B, 1, 28, 28) batches."""
    require(shared_data, "medmnist/pneumoniamnist.npz")
    x, y = next(iter(load_medmnist("pneumoniamnist", "val").loader(batch_size=32, shuffle=True)))
    assert x.shape == (32, 1, 28, 28) and y.shape == (32,)


@pytest.mark.parametrize("name", ["nuclei_dsb2018", "ms_lesion", "brats_sample", "dicom_samples", "mednist", "breastmnist"])
def test_real_datasets_verify(shared_data, name):
    """Every file of the shared copies passes its MD5 (and manifest) check."""
    spec = get_spec(name)
    require(shared_data, *(f"{spec.folder}/{r.path}" for r in spec.files))
    got = fetch(name)
    assert set(got.paths) == {r.path for r in spec.files}
    assert all(p.is_relative_to(shared_data) for p in got.paths.values())
    assert got.folder == shared_data / spec.folder


def test_nuclei_manifest_detects_corruption(shared_data, tmp_path, monkeypatch, fresh_caches):
    """A copy whose listed files differ from MD5SUMS is refused with a ChecksumError."""
    src = shared_data / "nuclei_dsb2018"
    require(shared_data, "nuclei_dsb2018/index.csv", "nuclei_dsb2018/MD5SUMS")
    lines = (src / "MD5SUMS").read_text().splitlines()[:2]
    dst = tmp_path / "copy" / "nuclei_dsb2018"
    dst.mkdir(parents=True)
    shutil.copy(src / "index.csv", dst / "index.csv")
    for line in lines:
        rel = line.split(maxsplit=1)[1]
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, dst / rel)
    (dst / "MD5SUMS").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("DLMI_DATA_DIR", str(dst.parent))
    assert fetch("nuclei_dsb2018").folder == dst  # the intact partial copy passes

    first = dst / lines[0].split(maxsplit=1)[1]
    first.write_bytes(first.read_bytes() + b"\0")
    with pytest.raises(ChecksumError, match="MD5SUMS") as err:
        fetch("nuclei_dsb2018")
    assert first.name in str(err.value)

    first.unlink()
    with pytest.raises(DatasetNotFoundError, match="listed in MD5SUMS but missing"):
        fetch("nuclei_dsb2018")


@pytest.mark.parametrize(("patient", "contrasts"), [("patient19", {"FLAIR", "T1", "T1POST", "T2"}), ("patient07", {"FLAIR"})])
def test_ms_lesion(shared_data, patient, contrasts):
    """Every contrast and the mask share the (182, 218, 182) grid; the mask is binary; 1 mm spacing."""
    require(shared_data, "ms_lesion/patient19/FLAIR.nii.gz")
    out = load_ms_lesion(patient)
    assert set(out) == contrasts | {"GOLD", "spacing"}
    for c in contrasts:
        assert out[c].shape == (182, 218, 182) and out[c].dtype == np.float32
    assert out["GOLD"].shape == (182, 218, 182) and out["GOLD"].dtype == np.uint8
    assert set(np.unique(out["GOLD"])) == {0, 1}
    np.testing.assert_allclose(out["spacing"], [1.0, 1.0, 1.0])


def test_ms_lesion_unknown_patient():
    """An unknown patient is a ValueError listing the available ones."""
    with pytest.raises(ValueError, match="patient19"):
        load_ms_lesion("patient99")


# --------------------------------------------------------------------------- published MedMNIST v2 results


@pytest.mark.parametrize("flag", sorted(MEDMNIST_V2_RESULTS))
def test_medmnist_v2_results_are_auc_acc_pairs(flag):
    """Every stored result is an (AUC, ACC) pair of fractions in (0.5, 1], for a registered dataset."""
    assert flag in REGISTRY
    methods = MEDMNIST_V2_RESULTS[flag]
    assert "ResNet-18 (28)" in methods, "the baseline the book compares against"
    for method, pair in methods.items():
        assert isinstance(pair, tuple) and len(pair) == 2, method
        assert all(0.5 < v <= 1.0 for v in pair), (method, pair)


@pytest.mark.parametrize("flag", sorted(MEDMNIST_V2_RESULTS))
def test_medmnist_v2_table(flag):
    """One row per method, columns AUC and ACC, holding the stored pairs."""
    table = medmnist_v2_table(flag)
    assert list(table.columns) == ["AUC", "ACC"]
    assert list(table.index) == list(MEDMNIST_V2_RESULTS[flag])
    for method, (auc, acc) in MEDMNIST_V2_RESULTS[flag].items():
        assert table.loc[method, "AUC"] == auc and table.loc[method, "ACC"] == acc


def test_medmnist_v2_table_published_values():
    """Spot check against the paper (Yang et al. 2023, Table 3): PneumoniaMNIST, ResNet-18 (28)."""
    row = medmnist_v2_table("pneumoniamnist").loc["ResNet-18 (28)"]
    assert (row["AUC"], row["ACC"]) == (0.944, 0.854)


@pytest.mark.parametrize("flag", ["nope", "PneumoniaMNIST", "pneumoniamnist_64", "mednist", ""])
def test_medmnist_v2_table_unknown_flag(flag):
    """A dataset without stored results is a ValueError listing those that have some."""
    with pytest.raises(ValueError, match="pneumoniamnist"):
        medmnist_v2_table(flag)


# --------------------------------------------------------------------------- binary_task


@pytest.mark.parametrize("positive", ["c2", 2], ids=["by-name", "by-index"])
def test_binary_task_relabels_one_class_against_the_rest(positive):
    """Class c2 becomes 1, every other class 0; images and order are kept."""
    from dlmi.data import binary_task

    full = make_set((5, 3, 4, 2))
    binary = binary_task(full, positive)
    assert torch.equal(binary.images, full.images)
    assert torch.equal(binary.labels, (full.labels == 2).long())
    assert binary.labels.dtype == torch.int64
    assert binary.classes == ("other", "c2") and binary.task == "binary-class" and binary.n_classes == 2
    np.testing.assert_array_equal(binary.class_counts(), [10, 4])
    assert "binary task: 'c2' (1) vs the other 3 classes (0)" in binary.note
    assert binary_task(full, "c0", negative_name="rest").classes == ("rest", "c0")


@pytest.mark.parametrize(
    ("positive", "kwargs", "match"),
    [("tumour", {}, "unknown class"), (7, {}, "out of range"), (-1, {}, "out of range"), ("c1", {"negative_name": "c1"}, "own name")],
)
def test_binary_task_bad_input(positive, kwargs, match):
    from dlmi.data import binary_task

    with pytest.raises(ValueError, match=match):
        binary_task(make_set((5, 3, 4)), positive, **kwargs)


def test_binary_task_needs_the_positive_class_and_single_labels():
    from dlmi.data import binary_task

    with pytest.raises(ValueError, match="no 'c2' image"):
        binary_task(make_set((5, 3, 0)), "c2")
    multi = ImageSet(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.ones(2, 3), ("a", "b", "c"), "multi-label, binary-class", "t", "train", "")
    with pytest.raises(ValueError, match="one class per image"):
        binary_task(multi, "a")


def test_binary_task_pathmnist(shared_data):
    """PathMNIST: adenocarcinoma epithelium (class 8) against the other eight tissue classes."""
    from dlmi.data import binary_task

    require(shared_data, "medmnist/pathmnist.npz")
    test = load_medmnist("pathmnist", "test")
    binary = binary_task(test, "colorectal adenocarcinoma epithelium")
    assert test.classes.index("colorectal adenocarcinoma epithelium") == 8
    assert int(binary.labels.sum()) == int((test.labels == 8).sum()) == 1233
    assert len(binary) == 7180


# --------------------------------------------------------------------------- volume_slices (chapter 7)


def test_volume_slices_order_labels_and_groups():
    """Slices come volume by volume from the middle of D, inherit the label, and know their volume."""
    n, d = 3, 10
    vols = torch.arange(n * d * 2 * 2, dtype=torch.int64).reshape(n, 1, d, 2, 2).to(torch.uint8)
    volumes = ImageSet(vols, torch.tensor([0, 1, 0]), ("a", "b"), "binary-class", "toy3d", "test", "toy")
    slices, groups = data.volume_slices(volumes, 4)
    assert slices.images.shape == (n * 4, 1, 2, 2)
    assert groups.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert slices.labels.tolist() == [0] * 4 + [1] * 4 + [0] * 4
    for i in range(n * 4):  # slice i is depth 3 + i % 4 of volume i // 4 (central 4 of 10)
        assert torch.equal(slices.images[i], vols[i // 4, :, 3 + i % 4])
    assert "central 4 of 10" in slices.note


def test_volume_slices_bad_input():
    flat = ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), ("a", "b"), "binary-class", "t", "test", "")
    with pytest.raises(ValueError, match="expected 3D volumes"):
        data.volume_slices(flat, 2)
    vols = replace(flat, images=torch.zeros(2, 1, 5, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"n_slices must lie in \[1, 5\]"):
        data.volume_slices(vols, 6)


# --------------------------------------------------------------------------- nuclei split (chapter 9)


def test_nuclei_split_is_fixed_disjoint_and_complete(shared_data):
    """The committed split equals a fresh make_nuclei_split of the index: every id in exactly one split."""
    import pandas as pd

    require(shared_data, "nuclei_dsb2018/index.csv")
    index = pd.read_csv(shared_data / "nuclei_dsb2018" / "index.csv")
    stored = data.nuclei_split()
    assert stored.index.is_unique and set(stored.index) == set(index["image_id"])
    assert stored.equals(data.make_nuclei_split(index).rename(stored.name))
    parts = {s: set(stored.index[stored == s]) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == len(index) == 664
    assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"] or parts["val"] & parts["test"])
    assert len(parts["train"]) == 464 and len(parts["val"]) == len(parts["test"]) == 100
    # stratified: colour images are in every split in about their overall share (107 / 664)
    colour = set(index.loc[index["channels"] == 3, "image_id"])
    for p in parts.values():
        assert abs(len(p & colour) / len(p) - 107 / 664) < 0.03


def test_make_nuclei_split_depends_on_seed_only():
    import pandas as pd

    index = pd.DataFrame({"image_id": [f"i{k:03d}" for k in range(60)], "height": [256] * 40 + [520] * 20,
                          "width": [256] * 40 + [696] * 20, "channels": [1] * 60})
    a, b, c = data.make_nuclei_split(index), data.make_nuclei_split(index), data.make_nuclei_split(index, seed=1)
    assert a.equals(b) and not a.equals(c)
    assert a.value_counts().to_dict() == {"train": 42, "val": 9, "test": 9}
    with pytest.raises(ValueError, match="sum"):
        data.make_nuclei_split(index, fractions=(0.5, 0.2, 0.2))


def test_load_nuclei(shared_data):
    require(shared_data, "nuclei_dsb2018/index.csv")
    images = data.load_nuclei("test")
    assert len(images) == 100
    assert [x.image_id for x in images] == sorted(x.image_id for x in images)
    for x in images[:10]:
        assert x.image.dtype == np.uint8 and x.image.ndim == 3 and x.image.shape[0] in (1, 3)
        assert x.labels.shape == x.image.shape[1:] and x.labels.max() >= 1
        assert set(np.unique(x.mask)) <= {0, 1}
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_nuclei("training")
