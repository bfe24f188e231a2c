"""Medical image files: what they hold, how to de-identify them, and how to process them reproducibly.

The helpers of chapter 3 (exploratory data analysis) for DICOM (read with ``pydicom``) and
NIfTI (read with ``nibabel``):

- :func:`metadata_table`: one row per file with shape, voxel spacing, orientation code,
  intensity range, data type and modality, and :func:`save_csv` to keep it.
- :data:`IDENTIFYING_ATTRIBUTES`, :func:`identifying_fields`, :func:`anonymise` and
  :func:`remaining_identifiers`: which DICOM attributes can identify a person, an anonymised
  copy, and a check of that copy.
- :func:`to_ras`, :func:`resample` and :func:`label_interpolation`: one geometry for all images,
  labels resampled with nearest-neighbour interpolation, and what linear interpolation does to them.
- :func:`run_pipeline`: raw NIfTI files to a separate processed folder with a manifest of MD5s,
  byte-identical when run again.

Conventions. Shapes, spacings and orientation codes list the array axes fastest-varying first,
as NIfTI and ITK do (for a DICOM image: columns, rows, frames). An orientation code names the
direction each axis points *towards* (nibabel's convention): ``"RAS"`` means the first axis runs
towards the patient's right, the second towards anterior, the third towards superior.
Datasets are located with :func:`dlmi.data.fetch`, never by a hard-coded path.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import nibabel.processing
import numpy as np
import pandas as pd
import pydicom
import pydicom.pixels
from pydicom.dataelem import DataElement
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dlmi.config import get_settings
from dlmi.data import fetch, md5sum

__all__ = [
    "IDENTIFYING_ATTRIBUTES",
    "MNI152_1MM_AFFINE",
    "MNI152_1MM_SHAPE",
    "DicomImage",
    "IdentifyingAttribute",
    "LabelResampling",
    "MedicalFileError",
    "RawVolume",
    "anonymise",
    "check_label_map",
    "dataset_files",
    "describe_file",
    "dicom_orientation",
    "file_format",
    "file_md5",
    "identifying_fields",
    "identifying_table",
    "in_mni152_1mm",
    "label_interpolation",
    "mask_value",
    "metadata_table",
    "orientation_code",
    "raw_volumes",
    "read_dicom_image",
    "remaining_identifiers",
    "resample",
    "run_pipeline",
    "save_csv",
    "to_ras",
]

Format = Literal["DICOM", "NIfTI"]


class MedicalFileError(ValueError):
    """A file that is not a readable DICOM or NIfTI image, or that does not suit the function it was given to."""


# --------------------------------------------------------------------------- reading files


def _head(path: Path, n: int) -> bytes:
    """The first ``n`` bytes of a file, decompressed first if it is gzip-compressed."""
    with open(path, "rb") as f:
        start = f.read(n)
    if start[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as g:
                return g.read(n)
        except (OSError, EOFError, zlib.error) as err:
            raise MedicalFileError(f"{path}: a damaged gzip file ({err}); fetch it again") from None
    return start


def file_format(path: str | os.PathLike) -> Format:
    """Tell a DICOM file from a NIfTI file by content (not by name).

    Returns:
        ``"DICOM"`` (the ``DICM`` marker at byte 128) or ``"NIfTI"`` (a NIfTI-1 or NIfTI-2 header,
        gzip-compressed or not).

    Raises:
        FileNotFoundError: the file does not exist.
        MedicalFileError: the file is neither.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    head = _head(path, 544)
    if head[128:132] == b"DICM":
        return "DICOM"
    if len(head) >= 348:
        for order in ("<", ">"):
            size = int(np.frombuffer(head[:4], dtype=f"{order}i4")[0])
            if size == 348 and head[344:348] in (b"n+1\0", b"ni1\0"):
                return "NIfTI"
            if size == 540 and head[4:8] in (b"n+2\0", b"ni2\0"):
                return "NIfTI"
    raise MedicalFileError(
        f"{path}: neither DICOM (no 'DICM' marker at byte 128) nor NIfTI (no NIfTI header); "
        "old DICOM files without a preamble can be read with pydicom.dcmread(path, force=True)"
    )


def _read_dicom(path: Path) -> Dataset:
    if file_format(path) != "DICOM":
        raise MedicalFileError(f"{path}: a NIfTI file, not DICOM")
    return pydicom.dcmread(path)


def _read_nifti(path: Path) -> nib.Nifti1Image:
    if file_format(path) != "NIfTI":
        raise MedicalFileError(f"{path}: a DICOM file, not NIfTI; convert it first (e.g. with dcm2niix)")
    try:
        return nib.load(path)
    except (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, ValueError, OSError) as err:
        raise MedicalFileError(f"{path}: unreadable NIfTI header ({err})") from None


def _voxels(img: nib.spatialimages.SpatialImage) -> np.ndarray:
    """The voxel array of an image, with a one-line error for a truncated or damaged file."""
    try:
        return np.asarray(img.dataobj)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        name = img.get_filename() or "image"
        raise MedicalFileError(f"{name}: voxel data unreadable ({err}); the file is truncated or damaged: fetch it again") from None


def dataset_files(*names: str) -> dict[str, Path]:
    """Every file of the named datasets, through :func:`dlmi.data.fetch` (verified MD5s).

    Args:
        names: Registry names, e.g. ``"dicom_samples"``, ``"ms_lesion"``, ``"brats_sample"``.

    Returns:
        ``{"<dataset>/<relative path>": absolute path}`` in registry order.
    """
    files: dict[str, Path] = {}
    for name in names:
        for rel, path in fetch(name).paths.items():
            files[f"{name}/{rel}"] = path
    return files


def orientation_code(affine: np.ndarray) -> str:
    """The orientation code of a voxel-to-world affine in RAS+ world coordinates (NIfTI's).

    Args:
        affine: ``(4, 4)`` (or ``(3, 3)`` for one 2-D image) voxel-to-RAS+ matrix.

    Returns:
        One letter per voxel axis, e.g. ``"LAS"``: the direction the axis points towards.
    """
    return "".join(nib.aff2axcodes(affine))


def _dicom_ras_affine(ds: Dataset) -> np.ndarray | None:
    """Voxel (column, row, slice) -> RAS+ mm affine from a DICOM image's geometry, if it has one."""
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    row_dir, col_dir = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row_dir, col_dir)
    spacing = ds.get("PixelSpacing") or (1.0, 1.0)
    thickness = float(ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0)
    lps = np.eye(4)
    # DICOM: PixelSpacing = (spacing between rows, spacing between columns); the row direction
    # cosine is the direction of increasing column index.
    lps[:3, 0] = row_dir * float(spacing[1])
    lps[:3, 1] = col_dir * float(spacing[0])
    lps[:3, 2] = normal * thickness
    lps[:3, 3] = np.asarray(ds.get("ImagePositionPatient") or (0, 0, 0), float)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM's LPS+ world -> NIfTI's RAS+ world


def dicom_orientation(ds: Dataset) -> str | None:
    """Orientation code of a DICOM image's (column, row, slice-normal) axes, e.g. ``"LPS"`` for a plain axial slice.

    Returns:
        The code, or ``None`` when the file has no patient geometry (``ImageOrientationPatient``),
        as in most ultrasound images.
    """
    affine = _dicom_ras_affine(ds)
    return None if affine is None else orientation_code(affine)


@dataclass(frozen=True)
class DicomImage:
    """The pixels of one DICOM image, ready to look at.

    Attributes:
        name: File name.
        modality: DICOM ``Modality`` (``"CT"``, ``"MR"``, ``"US"``, ...).
        pixels: ``(rows, cols)`` float32 values after the modality rescale (Hounsfield units for CT),
            or ``(rows, cols, 3)`` uint8 for colour images.
        spacing: ``(row spacing, column spacing)`` in mm, or ``None`` if the file gives none.
        window: ``(centre, width)`` display window from the header, or ``None``.
        overlay: ``(rows, cols)`` bool graphics overlay (group 6000), or ``None``.
        padding: ``(rows, cols)`` bool, true where a pixel holds ``PixelPaddingValue`` (no data), or ``None``.
    """

    name: str
    modality: str
    pixels: np.ndarray
    spacing: tuple[float, float] | None
    window: tuple[float, float] | None
    overlay: np.ndarray | None
    padding: np.ndarray | None


def _first(value: object) -> float:
    return float(value[0]) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else float(value)


def _dicom_image(ds: Dataset, path: Path) -> DicomImage:
    if "PixelData" not in ds:
        raise MedicalFileError(f"{path}: a DICOM file without pixel data (a report or structured document?)")
    stored = ds.pixel_array
    if stored.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        stored = stored[0]  # multi-frame: the first frame
    pixels = stored if stored.ndim == 3 else pydicom.pixels.apply_modality_lut(stored, ds).astype(np.float32)
    spacing = tuple(float(s) for s in ds.PixelSpacing) if "PixelSpacing" in ds else None
    window = None
    if "WindowCenter" in ds and "WindowWidth" in ds:
        window = (_first(ds.WindowCenter), _first(ds.WindowWidth))
    overlay = ds.overlay_array(0x6000).astype(bool) if 0x60003000 in ds else None
    padding = None
    if "PixelPaddingValue" in ds and stored.ndim == 2:
        padding = stored == ds.PixelPaddingValue
    return DicomImage(path.name, str(ds.get("Modality", "")), pixels, spacing, window, overlay, padding)


def read_dicom_image(path: str | os.PathLike) -> DicomImage:
    """Read one DICOM image's pixels with its spacing, display window, overlay and padding.

    Raises:
        MedicalFileError: not a DICOM file, or it holds no pixel data.
    """
    path = Path(path)
    return _dicom_image(_read_dicom(path), path)


def _dicom_row(path: Path) -> dict[str, object]:
    ds = _read_dicom(path)
    image = _dicom_image(ds, path)
    frames = int(ds.get("NumberOfFrames", 1))
    shape = (int(ds.Columns), int(ds.Rows)) + ((frames,) if frames > 1 else ())
    spacing = None if image.spacing is None else (image.spacing[1], image.spacing[0])
    thickness = ds.get("SliceThickness")
    return {
        "format": "DICOM",
        "modality": image.modality,
        "shape": shape,
        "channels": int(ds.get("SamplesPerPixel", 1)),
        "spacing_mm": None if spacing is None else tuple(round(s, 3) for s in spacing),
        "thickness_mm": float(thickness) if thickness not in (None, "") else float("nan"),
        "fov_mm": None if spacing is None else tuple(round(n * s, 1) for n, s in zip(shape, spacing)),
        "orientation": dicom_orientation(ds),
        "dtype": str(ds.pixel_array.dtype),
        "min": float(image.pixels.min()),
        "max": float(image.pixels.max()),
    }


def _nifti_row(path: Path) -> dict[str, object]:
    img = _read_nifti(path)
    data = _voxels(img)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    shape = tuple(int(n) for n in img.shape[:3])
    return {
        "format": "NIfTI",
        "modality": None,  # NIfTI has no modality field: only the file name tells
        "shape": shape,
        "channels": int(np.prod(img.shape[3:], dtype=int)),
        "spacing_mm": tuple(round(z, 3) for z in zooms),
        "thickness_mm": float("nan"),
        "fov_mm": tuple(round(n * z, 1) for n, z in zip(shape, zooms)),
        "orientation": orientation_code(img.affine),
        "dtype": str(img.get_data_dtype()),
        "min": float(data.min()),
        "max": float(data.max()),
    }


def describe_file(path: str | os.PathLike) -> dict[str, object]:
    """One row of the metadata table for a DICOM or NIfTI file.

    Returns:
        ``{"format", "modality", "shape", "channels", "spacing_mm", "thickness_mm", "fov_mm",
        "orientation", "dtype", "min", "max"}``. Shape, spacing and field of view (``fov_mm`` =
        shape x spacing) are fastest-varying axis first (DICOM: columns, rows). ``min``/``max`` are
        after the DICOM modality rescale (Hounsfield units for CT). ``None``/NaN where the file does
        not say (NIfTI has no modality; ultrasound often has no spacing or orientation).

    Raises:
        MedicalFileError: neither DICOM nor NIfTI, or a DICOM file without pixels.
    """
    path = Path(path)
    return _dicom_row(path) if file_format(path) == "DICOM" else _nifti_row(path)


def metadata_table(files: Mapping[str, str | os.PathLike] | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The metadata table: one row per file (see :func:`describe_file` for the columns).

    Args:
        files: ``{label: path}`` (e.g. from :func:`dataset_files`) or paths (labelled by file name).

    Returns:
        A DataFrame with a ``file`` column first, in the order given.
    """
    items = files.items() if isinstance(files, Mapping) else ((Path(p).name, p) for p in files)
    rows = [{"file": label, **describe_file(path)} for label, path in items]
    return pd.DataFrame(rows)


def save_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table as CSV (no index; tuples written as ``a x b x c``), creating folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table.copy()
    for column in out.columns:
        if out[column].map(lambda v: isinstance(v, tuple)).any():
            out[column] = out[column].map(lambda v: " x ".join(f"{x:g}" for x in v) if isinstance(v, tuple) else v)
    out.to_csv(path, index=False, lineterminator="\n")
    return path


# --------------------------------------------------------------------------- de-identification


@dataclass(frozen=True)
class IdentifyingAttribute:
    """A DICOM attribute that can identify a person, and what :func:`anonymise` does with it.

    Attributes:
        keyword: pydicom keyword, e.g. ``"PatientName"``.
        action: ``"Z"`` empty it (kept, zero length: required attributes), ``"X"`` remove it,
            ``"U"`` replace the UID consistently (DICOM PS3.15 action codes).
        reason: Why it can identify someone, in one line.
    """

    keyword: str
    action: Literal["X", "Z", "U"]
    reason: str


_A = IdentifyingAttribute
#: Attributes that can identify a person, after the DICOM PS3.15 Annex E Basic Application Level
#: Confidentiality Profile (a teaching subset: the standard lists several hundred). Beyond these,
#: :func:`anonymise` also empties every date and time, replaces every non-standard UID, and removes
#: private tags and overlay planes.
IDENTIFYING_ATTRIBUTES: tuple[IdentifyingAttribute, ...] = (
    # the patient
    _A("PatientName", "Z", "the patient's name"),
    _A("PatientID", "Z", "the hospital's record number: links straight to the patient's file"),
    _A("IssuerOfPatientID", "X", "names the hospital that issued the record number"),
    _A("OtherPatientIDs", "X", "further record numbers of the same person"),
    _A("OtherPatientIDsSequence", "X", "further record numbers of the same person"),
    _A("OtherPatientNames", "X", "aliases or former names"),
    _A("PatientBirthName", "X", "the name at birth"),
    _A("PatientMotherBirthName", "X", "the mother's maiden name, used in identity checks"),
    _A("PatientBirthDate", "Z", "with sex and postcode, a birth date singles out most people"),
    _A("PatientBirthTime", "X", "time of birth"),
    _A("PatientAge", "X", "age (very high ages are rare enough to identify)"),
    _A("PatientSex", "Z", "narrows down who the patient can be"),
    _A("PatientSize", "X", "height: a physical trait"),
    _A("PatientWeight", "X", "weight: a physical trait"),
    _A("PatientAddress", "X", "home address"),
    _A("PatientTelephoneNumbers", "X", "telephone number"),
    _A("MilitaryRank", "X", "rank: narrows down who the patient can be"),
    _A("EthnicGroup", "X", "a sensitive trait that narrows down who the patient can be"),
    _A("Occupation", "X", "occupation"),
    _A("ResponsiblePerson", "X", "a relative's or guardian's name"),
    _A("AdditionalPatientHistory", "X", "free text about the patient"),
    _A("PatientComments", "X", "free text about the patient"),
    _A("MedicalRecordLocator", "X", "where the paper record is kept"),
    # people who took part in the examination
    _A("ReferringPhysicianName", "Z", "the referring doctor, hence the clinic and the patient's area"),
    _A("ReferringPhysicianAddress", "X", "the referring doctor's address"),
    _A("PerformingPhysicianName", "X", "a member of staff's name"),
    _A("NameOfPhysiciansReadingStudy", "X", "the reporting radiologist's name"),
    _A("PhysiciansOfRecord", "X", "a member of staff's name"),
    _A("RequestingPhysician", "X", "the requesting doctor's name"),
    _A("OperatorsName", "X", "the radiographer who ran the scanner"),
    # where and on what
    _A("InstitutionName", "X", "the hospital where the scan was done"),
    _A("InstitutionAddress", "X", "the hospital's address"),
    _A("InstitutionalDepartmentName", "X", "the department"),
    _A("StationName", "X", "the scanner's network name: locates the site"),
    _A("DeviceSerialNumber", "X", "identifies one scanner, hence one site"),
    # the visit
    _A("AccessionNumber", "Z", "the order number in the hospital's systems: links back to the patient"),
    _A("StudyID", "Z", "a local study number"),
    _A("RequestedProcedureID", "X", "an order number"),
    _A("ScheduledProcedureStepID", "X", "an appointment number"),
    _A("PerformedProcedureStepID", "X", "an examination number"),
    _A("RequestAttributesSequence", "X", "the order: numbers and free text"),
    _A("RequestingService", "X", "the department that ordered the scan"),
    _A("StudyDate", "Z", "dates of care, combined with other facts, single out a patient"),
    _A("StudyTime", "Z", "time of the visit"),
    _A("SeriesDate", "X", "date of care"),
    _A("SeriesTime", "X", "time of care"),
    _A("AcquisitionDate", "X", "date of care"),
    _A("AcquisitionTime", "X", "time of care"),
    _A("AcquisitionDateTime", "X", "date and time of care"),
    _A("ContentDate", "Z", "date of care"),
    _A("ContentTime", "Z", "time of care"),
    _A("InstanceCreationDate", "X", "date the file was made, usually the day of the scan"),
    _A("InstanceCreationTime", "X", "time the file was made"),
    _A("TimezoneOffsetFromUTC", "X", "reveals the region where the scan was done"),
    # free text
    _A("StudyDescription", "X", "free text: may name the patient or the reason for the visit"),
    _A("SeriesDescription", "X", "free text written at the scanner"),
    _A("ProtocolName", "X", "free text: site-specific protocol names"),
    _A("RequestedProcedureDescription", "X", "free text of the order"),
    _A("ScheduledProcedureStepDescription", "X", "free text of the appointment"),
    _A("ImageComments", "X", "free text about the image"),
    _A("StudyComments", "X", "free text about the study"),
    _A("DerivationDescription", "X", "free text on how the image was made"),
    # unique identifiers: traceable to the hospital's archive
    _A("StudyInstanceUID", "U", "unique study number in the hospital's archive"),
    _A("SeriesInstanceUID", "U", "unique series number in the hospital's archive"),
    _A("SOPInstanceUID", "U", "unique image number in the hospital's archive"),
    _A("FrameOfReferenceUID", "U", "unique number of the scan's coordinate frame"),
    _A("InstanceCreatorUID", "U", "identifies the device or software that made the file"),
    _A("StorageMediaFileSetUID", "U", "identifies the disc or media the file came on"),
    _A("ReferencedSOPInstanceUID", "U", "points to another image in the hospital's archive"),
    # hidden places
    _A("IconImageSequence", "X", "a thumbnail of the image: may show burned-in text"),
    _A("DataSetTrailingPadding", "X", "padding bytes that may hold leftovers of earlier data"),
)
_ACTIONS = {a.keyword: a.action for a in IDENTIFYING_ATTRIBUTES}
_REASONS = {a.keyword: a.reason for a in IDENTIFYING_ATTRIBUTES}
_TEXT_VRS = {"AE", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UT"}
_DATE_VRS = {"DA", "DT", "TM"}
STANDARD_UID_ROOT = "1.2.840.10008."  # UIDs defined by the standard (SOP classes, syntaxes): not identifying
PRIVATE_TAGS = "private tags"
OVERLAYS = "overlay planes (60xx)"


def _is_empty(value: object) -> bool:
    return value is None or (hasattr(value, "__len__") and len(value) == 0)


def _is_overlay(elem: DataElement) -> bool:
    return 0x6000 <= elem.tag.group <= 0x601E and elem.tag.group % 2 == 0


def mask_value(value: object) -> str:
    """A shortened, masked form of a header value, safe to print: ``"Co… (21 chars)"``.

    Empty values give ``"(empty)"``, sequences ``"(sequence of n items)"``, bytes ``"(n bytes)"``.
    """
    if _is_empty(value):
        return "(empty)"
    if isinstance(value, pydicom.Sequence):
        return f"(sequence of {len(value)} item{'s' if len(value) != 1 else ''})"
    if isinstance(value, bytes):
        return f"({len(value)} bytes)"
    text = "\\".join(str(v) for v in value) if isinstance(value, pydicom.multival.MultiValue) else str(value)
    if len(text) <= 3:
        return text[0] + "*" * (len(text) - 1)
    return f"{text[:2]}… ({len(text)} chars)"


def identifying_fields(path: str | os.PathLike) -> dict[str, str]:
    """The identifying attributes one DICOM file carries, with masked values.

    Looks at the whole file, sequences included, for the attributes of :data:`IDENTIFYING_ATTRIBUTES`
    and adds :data:`PRIVATE_TAGS` and :data:`OVERLAYS` with their element counts.

    Returns:
        ``{keyword: masked value}`` in the order of :data:`IDENTIFYING_ATTRIBUTES` (present ones only,
        empty ones shown as ``"(empty)"``).

    Raises:
        MedicalFileError: not a DICOM file.
    """
    ds = _read_dicom(Path(path))
    found: dict[str, object] = {}
    counts = {PRIVATE_TAGS: 0, OVERLAYS: 0}

    def visit(_: Dataset, elem: DataElement) -> None:
        if elem.keyword in _ACTIONS and elem.keyword not in found:
            found[elem.keyword] = elem.value
        if elem.tag.is_private:
            counts[PRIVATE_TAGS] += 1
        elif _is_overlay(elem):
            counts[OVERLAYS] += 1

    ds.walk(visit)
    out = {a.keyword: mask_value(found[a.keyword]) for a in IDENTIFYING_ATTRIBUTES if a.keyword in found}
    out.update({k: f"{n} elements" for k, n in counts.items() if n})
    return out


def identifying_table(files: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """Which identifying attributes each DICOM file carries: one row per attribute found in any file.

    Args:
        files: ``{column label: path}``.

    Returns:
        A DataFrame indexed by attribute keyword with a ``reason`` column and one column per file
        holding the masked value, or ``""`` where the file lacks the attribute.
    """
    per_file = {label: identifying_fields(path) for label, path in files.items()}
    keys = [a.keyword for a in IDENTIFYING_ATTRIBUTES] + [PRIVATE_TAGS, OVERLAYS]
    keys = [k for k in keys if any(k in found for found in per_file.values())]
    reasons = {**_REASONS, PRIVATE_TAGS: "vendor fields: undocumented, may hold names and dates", OVERLAYS: "graphics drawn over the image: may hold text"}
    table = pd.DataFrame({"reason": [reasons[k] for k in keys]}, index=pd.Index(keys, name="attribute"))
    for label, found in per_file.items():
        table[label] = [found.get(k, "") for k in keys]
    return table


def _new_uid(uid: str, salt: str) -> str:
    """A deterministic replacement UID: the same original (and salt) always gives the same new UID."""
    return str(generate_uid(entropy_srcs=[salt, str(uid)]))


def anonymise(src: str | os.PathLike, dst: str | os.PathLike, salt: str = "dlmi") -> Path:
    """Write an anonymised copy of a DICOM file; the source file is only read.

    Removes private tags, overlay planes, group-length elements and the 128-byte preamble's
    content; applies :data:`IDENTIFYING_ATTRIBUTES` (``Z`` empty, ``X`` remove); empties every
    remaining date and time; replaces every UID outside the standard's root consistently (the same
    original UID and ``salt`` always give the same new UID, so files of one study stay together);
    marks the copy ``PatientIdentityRemoved = YES``. Pixel data are copied unchanged: text burned
    into the pixels is *not* removed.

    Args:
        src: The original DICOM file.
        dst: Where to write the copy (folders are created).
        salt: Secret mixed into the new UIDs; without it anyone holding an original UID could
            recompute its replacement.

    Returns:
        ``dst``.

    Raises:
        MedicalFileError: ``dst`` is ``src`` (the original would be overwritten), or ``src`` is not DICOM.
    """
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve() or (dst.exists() and dst.samefile(src)):
        raise MedicalFileError(f"anonymise would overwrite its source {src}; write the copy to another path")
    ds = _read_dicom(src)
    ds.remove_private_tags()
    for elem in list(ds):
        if _is_overlay(elem) or elem.tag.element == 0:
            del ds[elem.tag]

    def clean(dataset: Dataset, elem: DataElement) -> None:
        action = _ACTIONS.get(elem.keyword)
        if action == "X":
            del dataset[elem.tag]
        elif action == "Z" or (elem.VR in _DATE_VRS and not _is_empty(elem.value)):
            elem.value = pydicom.Sequence() if elem.VR == "SQ" else None
        elif elem.VR == "UI" and not _is_empty(elem.value):
            values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
            new = [v if str(v).startswith(STANDARD_UID_ROOT) else _new_uid(v, salt) for v in values]
            elem.value = new if len(new) > 1 else new[0]

    ds.walk(clean)
    if "SOPInstanceUID" in ds and getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "dlmi.io.anonymise (PS3.15 basic profile subset)"
    if ds.preamble is not None:
        ds.preamble = b"\0" * 128
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".part")
    ds.save_as(tmp)
    tmp.replace(dst)
    return dst


def _collect(ds: Dataset) -> tuple[set[str], dict[str, str]]:
    """Non-standard UIDs, and identifying text values (4+ characters) by value -> keyword."""
    uids: set[str] = set()
    texts: dict[str, str] = {}

    def visit(_: Dataset, elem: DataElement) -> None:
        if elem.VR == "UI" and not _is_empty(elem.value):
            values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
            uids.update(str(v) for v in values if not str(v).startswith(STANDARD_UID_ROOT))
        elif elem.keyword in _ACTIONS and elem.VR in _TEXT_VRS and not _is_empty(elem.value):
            if len(str(elem.value).strip()) >= 4:
                texts.setdefault(str(elem.value).strip(), elem.keyword)

    ds.walk(visit)
    return uids, texts


def remaining_identifiers(path: str | os.PathLike, original: str | os.PathLike | None = None) -> list[str]:
    """The identifying information still in a DICOM file (empty after :func:`anonymise`).

    Flags: attributes of :data:`IDENTIFYING_ATTRIBUTES` (actions ``Z`` and ``X``) that hold a value,
    any non-empty date or time, private tags, overlay planes. Given the ``original`` file it also
    flags UIDs copied unchanged from it, and any text element whose value equals an identifying
    value of the original (e.g. an accession number copied into another field).

    Returns:
        One line per finding, e.g. ``"PatientName"``, ``"StudyInstanceUID (original UID)"``.
    """
    ds = _read_dicom(Path(path))
    uids, texts = _collect(_read_dicom(Path(original))) if original is not None else (set(), {})
    findings: list[str] = []

    def add(finding: str) -> None:
        if finding not in findings:
            findings.append(finding)

    def visit(_: Dataset, elem: DataElement) -> None:
        if elem.tag.is_private:
            add(PRIVATE_TAGS)
        elif _is_overlay(elem):
            add(OVERLAYS)
        elif _is_empty(elem.value):
            return
        elif _ACTIONS.get(elem.keyword) in ("X", "Z") or elem.VR in _DATE_VRS:
            add(elem.keyword)
        elif elem.VR == "UI":
            values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
            if any(str(v) in uids for v in values):
                add(f"{elem.keyword} (original UID)")
        elif elem.VR in _TEXT_VRS and str(elem.value).strip() in texts:
            add(f"{elem.keyword} (holds the original {texts[str(elem.value).strip()]})")

    ds.walk(visit)
    return findings


# --------------------------------------------------------------------------- geometry

#: The FSL MNI152 1 mm template grid (what "MNI space, 1 mm" usually means for NIfTI files).
MNI152_1MM_SHAPE = (182, 218, 182)
MNI152_1MM_AFFINE = np.array(
    [[-1.0, 0.0, 0.0, 90.0], [0.0, 1.0, 0.0, -126.0], [0.0, 0.0, 1.0, -72.0], [0.0, 0.0, 0.0, 1.0]]
)


def in_mni152_1mm(img: nib.spatialimages.SpatialImage) -> bool:
    """True if an image lies on the MNI152 1 mm template grid (same shape and affine)."""
    return tuple(img.shape[:3]) == MNI152_1MM_SHAPE and np.allclose(img.affine, MNI152_1MM_AFFINE, atol=1e-3)


def to_ras(img: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """Reorient an image to RAS+ (axes towards right, anterior, superior) without resampling.

    Only flips and permutes array axes (``nibabel.as_closest_canonical``); voxel values are untouched.
    """
    return nib.as_closest_canonical(img)


def check_label_map(data: np.ndarray, name: str = "label map") -> None:
    """Refuse a label map whose values are not all whole numbers (it is probably an image).

    Raises:
        MedicalFileError: with an example of an offending value.
    """
    if np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.bool_):
        return
    bad = data[~np.isfinite(data) | (data != np.round(data))]
    if bad.size:
        raise MedicalFileError(
            f"{name} has non-integer values (e.g. {bad.flat[0]:g}); labels must be whole numbers: "
            "resample it as an image, or fix the file"
        )


def _spacing3(spacing: float | Sequence[float]) -> tuple[float, float, float]:
    values = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(s > 0 for s in values):
        raise ValueError(f"spacing must be one positive number or three, in mm; got {spacing!r}")
    return values


def resample(img: nib.spatialimages.SpatialImage, spacing: float | Sequence[float], *, label: bool = False, name: str = "image") -> nib.Nifti1Image:
    """Reorient to RAS+ and resample to a voxel spacing (``nibabel.processing.resample_to_output``).

    Args:
        img: A 3-D image.
        spacing: Target voxel size in mm: one number (isotropic) or three.
        label: True for a label map: nearest-neighbour interpolation and the original integer
            dtype, so every output value is one of the input labels. False: linear interpolation,
            float32 output.
        name: What to call the image in error messages.

    Returns:
        The resampled image, RAS+, covering the same field of view.

    Raises:
        MedicalFileError: ``label=True`` but the data are not whole numbers.
    """
    spacing = _spacing3(spacing)
    img = to_ras(nib.Nifti1Image(_voxels(img), img.affine))  # read (and check) the voxels once
    data = np.asarray(img.dataobj)
    if label:
        check_label_map(data, name)
    else:
        data = data.astype(np.float32)
    src = nib.Nifti1Image(data, img.affine)
    out = nibabel.processing.resample_to_output(src, spacing, order=0 if label else 1, mode="constant", cval=0.0)
    result = np.asarray(out.dataobj)
    if label:
        result = result.astype(data.dtype)
    return nib.Nifti1Image(result, out.affine)


@dataclass(frozen=True)
class LabelResampling:
    """A label map resampled both ways, and what linear interpolation got wrong.

    Attributes:
        original: The label map, RAS+.
        linear: Resampled with linear interpolation (float32): wrong on purpose.
        nearest: Resampled with nearest-neighbour interpolation (the right way).
        valid: The label values of the original.
        invalid_values: Distinct values (rounded to 3 decimals) of ``linear`` that are not valid labels.
        invalid_counts: Voxels per value of ``invalid_values``.
        rounded_invalid: Whole numbers that are not valid labels, which rounding ``linear``
            produces (e.g. 3 between labels 2 and 4).
        wrong_valid: Voxels where ``linear`` holds a valid label that differs from ``nearest``'s
            (e.g. 1, "necrotic core", halfway between background 0 and oedema 2).
    """

    original: nib.Nifti1Image
    linear: nib.Nifti1Image
    nearest: nib.Nifti1Image
    valid: tuple[int, ...]
    invalid_values: tuple[float, ...]
    invalid_counts: tuple[int, ...]
    rounded_invalid: tuple[int, ...]
    wrong_valid: int

    @property
    def n_invalid(self) -> int:
        """Voxels of the linear result that hold no valid label."""
        return int(sum(self.invalid_counts))


def label_interpolation(img: nib.spatialimages.SpatialImage, spacing: float | Sequence[float], name: str = "label map") -> LabelResampling:
    """Resample a label map with linear and with nearest-neighbour interpolation and list the damage.

    Linear interpolation averages neighbouring labels: between labels 2 and 4 it invents 3, between
    0 and 1 it invents 0.5. Non-integer target spacings (e.g. 1.5 mm from 1 mm) show it best.

    Returns:
        A :class:`LabelResampling`.

    Raises:
        MedicalFileError: the input is not a label map (non-integer values).
    """
    img = to_ras(nib.Nifti1Image(_voxels(img), img.affine))
    data = np.asarray(img.dataobj)
    check_label_map(data, name)
    valid = tuple(int(v) for v in np.unique(data))
    linear = resample(nib.Nifti1Image(data.astype(np.float32), img.affine), spacing)
    nearest = resample(img, spacing, label=True, name=name)
    linear_values = np.round(np.asarray(linear.dataobj), 3)
    values, counts = np.unique(linear_values, return_counts=True)
    bad = ~np.isin(values, valid)
    wrong_valid = np.isin(linear_values, valid) & (linear_values != np.asarray(nearest.dataobj))
    rounded = np.unique(np.rint(values[bad]).astype(int))
    return LabelResampling(
        original=nib.Nifti1Image(data, img.affine),
        linear=linear,
        nearest=nearest,
        valid=valid,
        invalid_values=tuple(float(v) for v in values[bad]),
        invalid_counts=tuple(int(c) for c in counts[bad]),
        rounded_invalid=tuple(int(v) for v in rounded if v not in valid),
        wrong_valid=int(wrong_valid.sum()),
    )


# --------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class RawVolume:
    """One raw input of :func:`run_pipeline`.

    Attributes:
        name: Relative output path, e.g. ``"ms_lesion/patient19/FLAIR.nii.gz"``.
        path: The raw NIfTI file (only read).
        kind: ``"image"`` (linear interpolation) or ``"label"`` (nearest neighbour).
    """

    name: str
    path: Path
    kind: Literal["image", "label"]


def raw_volumes(files: Mapping[str, str | os.PathLike], label_names: Sequence[str] = ("GOLD", "seg")) -> list[RawVolume]:
    """Pipeline inputs from ``{name: path}`` (e.g. :func:`dataset_files`); a file is a label map if
    its name without extension is one of ``label_names`` or ends in ``_<label name>``."""
    volumes = []
    for name, path in files.items():
        stem = Path(name).name.split(".")[0]
        is_label = any(stem == n or stem.endswith(f"_{n}") for n in label_names)
        volumes.append(RawVolume(name, Path(path), "label" if is_label else "image"))
    return volumes


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _write_nifti_gz(img: nib.Nifti1Image, path: Path) -> None:
    """Write ``.nii.gz`` byte-reproducibly: gzip header time 0 and no file name; atomic replace."""
    payload = gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(payload)
    tmp.replace(path)


def file_md5(path: str | os.PathLike) -> str:
    """MD5 hex digest of a file's bytes, computed afresh on every call (to prove a file unchanged)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_pipeline(inputs: Sequence[RawVolume], out_dir: str | os.PathLike, spacing: float | Sequence[float] = 1.5) -> pd.DataFrame:
    """Raw NIfTI files -> RAS+, resampled, written to a separate folder with a manifest.

    Images are resampled with linear interpolation (float32), label maps with nearest neighbour
    (original dtype). Outputs are ``out_dir/<name>`` plus ``out_dir/manifest.csv`` (one row per
    output: file, source MD5, kind, shape, spacing, orientation, MD5). The same inputs give
    byte-identical outputs on every run (gzip without a time stamp).

    Args:
        inputs: The raw volumes (see :func:`raw_volumes`).
        out_dir: Output folder; must not overlap a folder holding raw inputs or ``DLMI_DATA_DIR``.
        spacing: Target voxel size in mm (one number or three).

    Returns:
        The manifest as a DataFrame.

    Raises:
        MedicalFileError: ``out_dir`` overlaps the raw data, a name is absolute or climbs out with
            ``..``, or an input is not NIfTI or (for labels) has non-integer values.
    """
    out = Path(out_dir).resolve()
    spacing = _spacing3(spacing)
    raw_dirs = {v.path.resolve().parent for v in inputs}
    data_dir = get_settings().data_dir
    for raw in sorted(raw_dirs | ({data_dir} if data_dir else set())):
        if _overlaps(out, raw):
            raise MedicalFileError(f"output folder {out} overlaps the raw data folder {raw}; write processed data elsewhere")
    rows = []
    for volume in sorted(inputs, key=lambda v: v.name):
        rel = Path(volume.name)
        if rel.is_absolute() or ".." in rel.parts or not volume.name.endswith(".nii.gz"):
            raise MedicalFileError(f"output name {volume.name!r} must be a relative path ending in .nii.gz, without '..'")
        img = resample(_read_nifti(volume.path), spacing, label=volume.kind == "label", name=str(volume.path))
        target = out / rel
        _write_nifti_gz(img, target)
        rows.append(
            {
                "file": rel.as_posix(),
                "source_md5": md5sum(volume.path),
                "kind": volume.kind,
                "shape": " x ".join(str(n) for n in img.shape),
                "spacing_mm": " x ".join(f"{z:g}" for z in img.header.get_zooms()[:3]),
                "orientation": orientation_code(img.affine),
                "md5": file_md5(target),
            }
        )
    manifest = pd.DataFrame(rows)
    manifest.to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    return manifest
