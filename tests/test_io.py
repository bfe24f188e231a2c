"""Tests of dlmi.io: metadata tables, de-identification, geometry and the reproducible pipeline.

Real files come from the ``shared_data`` fixture (through :func:`dlmi.data.fetch`); error paths and
exact checks use tiny DICOM and NIfTI files built here in ``tmp_path``.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.datadict import tag_for_keyword
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dlmi import io

BRATS_SEG = "brats_sample/BraTS20_Training_002_seg.nii.gz"
MS_FLAIR = "ms_lesion/patient19/FLAIR.nii.gz"


def md5(path: Path) -> str:
    """MD5 of a file's bytes, computed afresh (no cache)."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def fake_dicom(path: Path, **overrides) -> Path:
    """A tiny but complete CT DICOM file with identifying fields, a private tag and a nested sequence."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.3"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.preamble = b"SECRET".ljust(128, b"\0")
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.3"
    ds.StudyInstanceUID = "1.2.3.4.5.6.7.1"
    ds.SeriesInstanceUID = "1.2.3.4.5.6.7.2"
    ds.Modality = "CT"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PAT-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC-9999"
    ds.InstitutionName = "General Hospital"
    ds.DeviceSerialNumber = "SN-123456"
    ds.ImageComments = "patient Jane Doe, follow-up"
    ds.Manufacturer = "ACME"
    ds.OtherPatientIDsSequence = DicomSequence([pydicom.Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "OLD-77"
    ds.ReferencedImageSequence = DicomSequence([pydicom.Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPClassUID = CTImageStorage
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.9"
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.8]
    ds.SliceThickness = 2.0
    ds.add_new(0x00091001, "LO", "private vendor note: Jane Doe")
    ds.add_new(0x00090010, "LO", "ACME private")
    ds.Rows, ds.Columns = 4, 6
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = np.arange(24, dtype=np.int16).reshape(4, 6).tobytes()
    for keyword, value in overrides.items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def fake_nifti(path: Path, data: np.ndarray, zooms=(1.0, 1.0, 1.0), codes: str = "LAS") -> Path:
    """A NIfTI file with the given data, voxel size and orientation code (axis-aligned)."""
    signs = {"R": 1.0, "L": -1.0, "A": 1.0, "P": -1.0, "S": 1.0, "I": -1.0}
    affine = np.diag([signs[c] * z for c, z in zip(codes, zooms)] + [1.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def two_labels(shape=(12, 10, 8)) -> np.ndarray:
    """A uint8 label map: label 2 at x = 2..4, label 4 at x = 5..9 (a 1.5 mm grid samples x = 4.5)."""
    labels = np.zeros(shape, dtype=np.uint8)
    labels[2:5, 2:8, 2:6] = 2
    labels[5:10, 2:8, 2:6] = 4
    return labels


# --------------------------------------------------------------------------- formats


def test_file_format_by_content(tmp_path):
    """DICOM and NIfTI are recognised by their bytes, whatever the file is called."""
    assert io.file_format(fake_dicom(tmp_path / "image.bin")) == "DICOM"
    assert io.file_format(fake_nifti(tmp_path / "vol.nii.gz", np.zeros((3, 3, 3), np.float32))) == "NIfTI"
    plain = fake_nifti(tmp_path / "vol.nii", np.zeros((3, 3, 3), np.float32))
    assert io.file_format(plain.rename(tmp_path / "vol.data")) == "NIfTI"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"just some text, not an image\n" * 20, "neither DICOM"),
        (gzip.compress(b"x" * 600), "neither DICOM"),
        (b"\x1f\x8b\x08\x00garbage", "damaged gzip"),
    ],
)
def test_file_format_rejects_other_files(tmp_path, payload, message):
    """A file that is neither DICOM nor NIfTI is a one-line MedicalFileError."""
    path = tmp_path / "thing.dcm"
    path.write_bytes(payload)
    with pytest.raises(io.MedicalFileError, match=message) as err:
        io.file_format(path)
    assert "\n" not in str(err.value)


def test_file_format_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.file_format(tmp_path / "nope.nii.gz")


# --------------------------------------------------------------------------- metadata


def test_describe_fake_nifti(tmp_path):
    """Shape, spacing, field of view, orientation, dtype and range come from the file."""
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 10
    row = io.describe_file(fake_nifti(tmp_path / "v.nii.gz", data, zooms=(2.0, 3.0, 4.0), codes="LAS"))
    assert row["format"] == "NIfTI" and row["modality"] is None
    assert row["shape"] == (4, 5, 6)
    assert row["spacing_mm"] == (2.0, 3.0, 4.0)
    assert row["fov_mm"] == (8.0, 15.0, 24.0)
    assert row["orientation"] == "LAS"
    assert row["dtype"] == "int16"
    assert (row["min"], row["max"]) == (-10.0, 109.0)


def test_describe_fake_dicom(tmp_path):
    """DICOM: (columns, rows) order, spacing swapped from PixelSpacing, values in HU after the rescale."""
    row = io.describe_file(fake_dicom(tmp_path / "ct.dcm"))
    assert row["format"] == "DICOM" and row["modality"] == "CT"
    assert row["shape"] == (6, 4)
    assert row["spacing_mm"] == (0.8, 0.5)  # PixelSpacing is (between rows, between columns)
    assert row["fov_mm"] == (4.8, 2.0)
    assert row["thickness_mm"] == 2.0
    assert row["orientation"] == "LPS"
    assert (row["min"], row["max"]) == (-1024.0, -1001.0)


def test_dicom_orientation_sagittal(tmp_path):
    """A sagittal slice: columns towards posterior, rows towards inferior, normal towards the right."""
    ds = pydicom.dcmread(fake_dicom(tmp_path / "sag.dcm", ImageOrientationPatient=[0, 1, 0, 0, 0, -1]))
    assert io.dicom_orientation(ds) == "PIR"
    ds = pydicom.dcmread(fake_dicom(tmp_path / "nogeo.dcm"))
    del ds.ImageOrientationPatient
    assert io.dicom_orientation(ds) is None


def test_describe_dicom_without_pixels(tmp_path):
    path = fake_dicom(tmp_path / "nopix.dcm")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(io.MedicalFileError, match="without pixel data"):
        io.describe_file(path)


def test_metadata_table_and_csv(tmp_path):
    """One row per file in the given order; the CSV writes tuples as 'a x b' and is reproducible."""
    files = {
        "a/ct.dcm": fake_dicom(tmp_path / "ct.dcm"),
        "b/v.nii.gz": fake_nifti(tmp_path / "v.nii.gz", np.ones((2, 3, 4), np.float32)),
    }
    table = io.metadata_table(files)
    assert list(table["file"]) == ["a/ct.dcm", "b/v.nii.gz"]
    assert list(table.columns[:3]) == ["file", "format", "modality"]
    first = io.save_csv(table, tmp_path / "out" / "meta.csv")
    again = io.save_csv(table, tmp_path / "out" / "meta2.csv")
    assert first.read_bytes() == again.read_bytes()
    back = pd.read_csv(first)
    assert list(back["shape"]) == ["6 x 4", "2 x 3 x 4"]
    assert list(io.metadata_table([files["a/ct.dcm"]])["file"]) == ["ct.dcm"]


def test_metadata_table_rejects_other_files(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n" * 100)
    with pytest.raises(io.MedicalFileError, match="neither DICOM"):
        io.metadata_table([path])


def test_metadata_table_real(shared_data):
    """The six DICOM files and the NIfTI volumes: known sizes, spacings, orientations and ranges."""
    table = io.metadata_table(io.dataset_files("dicom_samples", "ms_lesion", "brats_sample")).set_index("file")
    assert len(table) == 6 + 9 + 5
    ct = table.loc["dicom_samples/CT_small.dcm"]
    assert (ct["modality"], ct["shape"], ct["orientation"], ct["dtype"]) == ("CT", (128, 128), "LPS", "int16")
    assert ct["spacing_mm"] == (0.661, 0.661)
    assert table.loc["dicom_samples/693_UNCR.dcm", "min"] == -3024.0  # padding value outside the scanned circle
    assert table.loc["dicom_samples/MR2_UNCR.dcm", "orientation"] == "PIR"  # an oblique shoulder slice
    us = table.loc["dicom_samples/US1_UNCR.dcm"]
    assert us["channels"] == 3 and us["spacing_mm"] is None and pd.isna(us["orientation"])
    ms = table.loc[MS_FLAIR]
    assert (ms["shape"], ms["spacing_mm"], ms["orientation"]) == ((182, 218, 182), (1.0, 1.0, 1.0), "LAS")
    brats = table.loc[BRATS_SEG]
    assert (brats["shape"], brats["orientation"], brats["dtype"], brats["max"]) == ((240, 240, 155), "LPS", "uint8", 4.0)


def test_read_dicom_image_real(shared_data):
    """Overlay, padding and colour are read where the files have them."""
    files = io.dataset_files("dicom_samples")
    siemens = io.read_dicom_image(files["dicom_samples/MR-SIEMENS-DICOM-WithOverlays.dcm"])
    assert siemens.overlay is not None and siemens.overlay.shape == siemens.pixels.shape and siemens.overlay.any()
    head = io.read_dicom_image(files["dicom_samples/693_UNCR.dcm"])
    assert head.window == (40.0, 100.0) and head.padding.any()
    assert head.pixels[head.padding].max() == -3024.0
    us = io.read_dicom_image(files["dicom_samples/US1_UNCR.dcm"])
    assert us.pixels.shape == (480, 640, 3) and us.spacing is None


# --------------------------------------------------------------------------- de-identification


def test_identifying_attributes_are_real_keywords():
    """Every listed attribute is a DICOM keyword with a known action and a one-line reason."""
    keywords = [a.keyword for a in io.IDENTIFYING_ATTRIBUTES]
    assert len(keywords) == len(set(keywords))
    for attribute in io.IDENTIFYING_ATTRIBUTES:
        assert tag_for_keyword(attribute.keyword) is not None, attribute.keyword
        assert attribute.action in ("X", "Z", "U")
        assert attribute.reason and "\n" not in attribute.reason
    assert {"PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "AccessionNumber", "StudyInstanceUID", "DeviceSerialNumber"} <= set(keywords)


@pytest.mark.parametrize(
    ("value", "masked"),
    [("", "(empty)"), (None, "(empty)"), ("Doe^Jane", "Do… (8 chars)"), ("M", "M"), ("70", "7*"), (b"abc", "(3 bytes)")],
)
def test_mask_value(value, masked):
    assert io.mask_value(value) == masked


def test_identifying_fields_masks_values(tmp_path):
    """The report lists what the file carries, masked, including private tags and nested attributes."""
    found = io.identifying_fields(fake_dicom(tmp_path / "ct.dcm"))
    assert found["PatientName"] == "Do… (8 chars)"
    assert found["OtherPatientIDsSequence"] == "(sequence of 1 item)"
    assert found["ReferencedSOPInstanceUID"].startswith("1.")
    assert found[io.PRIVATE_TAGS] == "2 elements"
    assert "Jane" not in " ".join(found.values())
    assert "Manufacturer" not in found and "Modality" not in found


def test_identifying_table(tmp_path):
    a = fake_dicom(tmp_path / "a.dcm")
    b = fake_dicom(tmp_path / "b.dcm")
    io.anonymise(b, tmp_path / "b_anon.dcm")
    table = io.identifying_table({"a": a, "anon": tmp_path / "b_anon.dcm"})
    assert table.loc["PatientName", "a"] == "Do… (8 chars)"
    assert table.loc["PatientName", "anon"] == "(empty)"
    assert table.loc["InstitutionName", "anon"] == ""
    assert table.loc["PatientName", "reason"]


def test_anonymise_fake(tmp_path):
    """Identifying fields emptied or removed, UIDs replaced, private tags gone, source and pixels intact."""
    src = fake_dicom(tmp_path / "raw" / "ct.dcm")
    before = md5(src)
    dst = io.anonymise(src, tmp_path / "anon" / "ct.dcm")
    assert md5(src) == before
    assert io.remaining_identifiers(src)  # the original is full of identifiers
    assert io.remaining_identifiers(dst, original=src) == []
    orig, anon = pydicom.dcmread(src), pydicom.dcmread(dst)
    assert anon.PixelData == orig.PixelData
    assert np.array_equal(anon.pixel_array, orig.pixel_array)
    assert anon.PatientName == "" and anon.PatientID == "" and anon.StudyDate == ""
    assert "InstitutionName" not in anon and "ImageComments" not in anon and "OtherPatientIDsSequence" not in anon
    assert not any(elem.tag.is_private for elem in anon.iterall())
    assert anon.Manufacturer == "ACME" and anon.Modality == "CT"  # not identifying: kept
    assert anon.SOPClassUID == orig.SOPClassUID  # a standard UID: kept
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert anon[keyword].value != orig[keyword].value
    assert anon.ReferencedImageSequence[0].ReferencedSOPInstanceUID != "1.2.3.4.5.6.7.9"
    assert anon.file_meta.MediaStorageSOPInstanceUID == anon.SOPInstanceUID
    assert anon.PatientIdentityRemoved == "YES"
    assert anon.preamble == b"\0" * 128
    assert b"Jane" not in dst.read_bytes() and b"SECRET" not in dst.read_bytes()


def test_anonymise_uids_consistent(tmp_path):
    """The same original UID (and salt) always gives the same new UID: a study stays one study."""
    first = fake_dicom(tmp_path / "1.dcm")
    second = fake_dicom(tmp_path / "2.dcm", SOPInstanceUID="1.2.3.4.5.6.7.4")
    a = pydicom.dcmread(io.anonymise(first, tmp_path / "a1.dcm"))
    b = pydicom.dcmread(io.anonymise(second, tmp_path / "a2.dcm"))
    again = pydicom.dcmread(io.anonymise(first, tmp_path / "a3.dcm"))
    salted = pydicom.dcmread(io.anonymise(first, tmp_path / "a4.dcm", salt="another secret"))
    assert a.StudyInstanceUID == b.StudyInstanceUID == again.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert a.SOPInstanceUID == again.SOPInstanceUID
    assert salted.StudyInstanceUID != a.StudyInstanceUID
    assert (tmp_path / "a1.dcm").read_bytes() == (tmp_path / "a3.dcm").read_bytes()


def test_anonymise_refuses_to_overwrite_source(tmp_path):
    """dst == src (however spelled) is refused before anything is written."""
    src = fake_dicom(tmp_path / "ct.dcm")
    before = md5(src)
    for dst in (src, tmp_path / "." / "ct.dcm"):
        with pytest.raises(io.MedicalFileError, match="overwrite its source"):
            io.anonymise(src, dst)
    assert md5(src) == before


def test_anonymise_rejects_nifti(tmp_path):
    path = fake_nifti(tmp_path / "v.nii.gz", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(io.MedicalFileError, match="not DICOM"):
        io.anonymise(path, tmp_path / "out.dcm")


def test_remaining_identifiers_finds_copied_values(tmp_path):
    """A value copied from an identifying field into a kept field is caught by comparing with the original."""
    src = fake_dicom(tmp_path / "ct.dcm")
    dst = io.anonymise(src, tmp_path / "anon.dcm")
    ds = pydicom.dcmread(dst)
    ds.Manufacturer = "PAT-0001"  # the original PatientID, hidden in a field anonymise keeps
    ds.StudyInstanceUID = "1.2.3.4.5.6.7.1"  # the original study UID
    ds.add_new(0x00291010, "LO", "vendor")
    ds.save_as(dst)
    found = io.remaining_identifiers(dst, original=src)
    assert "Manufacturer (holds the original PatientID)" in found
    assert "StudyInstanceUID (original UID)" in found
    assert io.PRIVATE_TAGS in found


def test_anonymise_real_samples(shared_data, tmp_path):
    """Every sample DICOM file: anonymised copy verified clean, original bytes and pixels unchanged."""
    for name, src in io.dataset_files("dicom_samples").items():
        before = md5(src)
        dst = io.anonymise(src, tmp_path / Path(name).name)
        assert md5(src) == before, name
        assert io.remaining_identifiers(src), name
        assert io.remaining_identifiers(dst, original=src) == [], name
        orig, anon = pydicom.dcmread(src), pydicom.dcmread(dst)
        assert anon.PixelData == orig.PixelData, name
        assert "IconImageSequence" not in anon and not any(0x6000 <= e.tag.group <= 0x601E for e in anon)


# --------------------------------------------------------------------------- geometry


def test_to_ras_flips_axes_not_values(tmp_path):
    """An LAS volume becomes RAS: the first axis is reversed, the values are the same."""
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    img = nib.load(fake_nifti(tmp_path / "v.nii.gz", data, codes="LAS"))
    ras = io.to_ras(img)
    assert io.orientation_code(ras.affine) == "RAS"
    assert np.array_equal(np.asarray(ras.dataobj), data[::-1])
    # the same voxel keeps its world position
    assert np.allclose(img.affine @ [0, 1, 2, 1], ras.affine @ [2, 1, 2, 1])


def test_resample_image_and_label(tmp_path):
    """Images: linear, float32. Labels: nearest neighbour, original dtype, only original values."""
    labels = two_labels()
    img = nib.Nifti1Image(labels, np.diag([-1.0, 1.0, 1.0, 1.0]))
    out_img = io.resample(img, 2.0)
    out_lab = io.resample(img, (1.5, 1.5, 1.5), label=True)
    assert out_img.get_data_dtype() == np.float32
    assert io.orientation_code(out_img.affine) == "RAS"
    assert np.allclose(out_img.header.get_zooms(), (2.0, 2.0, 2.0))
    assert np.asarray(out_lab.dataobj).dtype == np.uint8
    assert set(np.unique(np.asarray(out_lab.dataobj))) <= {0, 2, 4}


def test_resample_label_refuses_non_integer(tmp_path):
    img = nib.Nifti1Image(np.full((4, 4, 4), 0.37, np.float32), np.eye(4))
    with pytest.raises(io.MedicalFileError, match="non-integer values"):
        io.resample(img, 2.0, label=True)
    with pytest.raises(io.MedicalFileError, match="non-integer"):
        io.label_interpolation(img, 1.5)


@pytest.mark.parametrize("spacing", [0, -1.0, (1.0, 2.0)])
def test_resample_bad_spacing(spacing):
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="spacing"):
        io.resample(img, spacing)


def test_label_interpolation_invents_three():
    """Between labels 2 and 4, linear interpolation makes 3 (not a label); nearest neighbour does not."""
    demo = io.label_interpolation(nib.Nifti1Image(two_labels(), np.eye(4)), 1.5)
    assert demo.valid == (0, 2, 4)
    assert 3.0 in demo.invalid_values and 1.0 in demo.invalid_values  # 1 = halfway between 0 and 2
    assert 3 in demo.rounded_invalid
    assert demo.n_invalid == sum(demo.invalid_counts) > 0
    assert set(np.unique(np.asarray(demo.nearest.dataobj))) <= {0, 2, 4}
    assert np.asarray(demo.linear.dataobj).dtype == np.float32


def test_label_interpolation_brats(shared_data):
    """The real BraTS labels {0, 1, 2, 4}: linear resampling to 1.5 mm creates 0.5, 1.5 and 3."""
    demo = io.label_interpolation(nib.load(io.dataset_files("brats_sample")[BRATS_SEG]), 1.5)
    assert demo.valid == (0, 1, 2, 4)
    assert {0.5, 1.5, 3.0} <= set(demo.invalid_values)
    assert demo.rounded_invalid == (3,)
    assert demo.wrong_valid > 0
    assert set(np.unique(np.asarray(demo.nearest.dataobj))) <= {0, 1, 2, 4}


def test_mni_grid(shared_data):
    """The MS data lie on the MNI152 1 mm grid; the BraTS case does not (it is in SRI24 space)."""
    files = io.dataset_files("ms_lesion", "brats_sample")
    assert io.in_mni152_1mm(nib.load(files[MS_FLAIR]))
    assert not io.in_mni152_1mm(nib.load(files[BRATS_SEG]))


# --------------------------------------------------------------------------- pipeline


def raw_folder(root: Path) -> list[io.RawVolume]:
    """Two raw subjects, each an LAS float image and a uint8 label map."""
    files = {}
    for subject in ("s1", "s2"):
        files[f"{subject}/T1.nii.gz"] = fake_nifti(root / subject / "T1.nii.gz", np.random.default_rng(0).random((12, 10, 8), dtype=np.float32) * 100, zooms=(1.0, 1.0, 2.0))
        files[f"{subject}/GOLD.nii.gz"] = fake_nifti(root / subject / "GOLD.nii.gz", two_labels(), zooms=(1.0, 1.0, 2.0))
    return io.raw_volumes(files)


def test_raw_volumes_kinds(tmp_path):
    kinds = {v.name: v.kind for v in io.raw_volumes({"a/GOLD.nii.gz": tmp_path, "b/case_seg.nii.gz": tmp_path, "c/FLAIR.nii.gz": tmp_path})}
    assert kinds == {"a/GOLD.nii.gz": "label", "b/case_seg.nii.gz": "label", "c/FLAIR.nii.gz": "image"}


def test_run_pipeline_reproducible(tmp_path):
    """Two runs give byte-identical outputs and manifests; the raw files are untouched."""
    inputs = raw_folder(tmp_path / "raw")
    raw_md5 = {v.name: md5(v.path) for v in inputs}
    first = io.run_pipeline(inputs, tmp_path / "run1", spacing=1.5)
    second = io.run_pipeline(inputs, tmp_path / "run2", spacing=1.5)
    assert first.equals(second)
    assert (tmp_path / "run1" / "manifest.csv").read_bytes() == (tmp_path / "run2" / "manifest.csv").read_bytes()
    assert {v.name: md5(v.path) for v in inputs} == raw_md5
    assert list(first["file"]) == sorted(v.name for v in inputs)
    for row in first.itertuples():
        out = tmp_path / "run1" / row.file
        assert md5(out) == row.md5 == md5(tmp_path / "run2" / row.file)
        assert out.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header time stamp 0
        img = nib.load(out)
        assert io.orientation_code(img.affine) == "RAS" and np.allclose(img.header.get_zooms(), 1.5)
        assert row.source_md5 == raw_md5[row.file]
        if row.kind == "label":
            assert set(np.unique(np.asarray(img.dataobj))) <= {0, 2, 4}
    # a re-run into the same folder overwrites with the same bytes
    assert io.run_pipeline(inputs, tmp_path / "run1", spacing=1.5).equals(first)


@pytest.mark.parametrize("where", ["raw", "raw/s1", "raw/s1/sub", "."])
def test_run_pipeline_refuses_raw_folder(tmp_path, where):
    """Writing into (or above) a raw data folder is refused before anything is written."""
    inputs = raw_folder(tmp_path / "raw")
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(io.MedicalFileError, match="overlaps the raw data folder"):
        io.run_pipeline(inputs, tmp_path / where)
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_run_pipeline_refuses_data_dir(tmp_path, monkeypatch):
    inputs = raw_folder(tmp_path / "raw")
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("DLMI_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(io.MedicalFileError, match="overlaps"):
        io.run_pipeline(inputs, tmp_path / "data" / "processed")


def test_run_pipeline_bad_inputs(tmp_path):
    """Non-integer labels, DICOM inputs and names that climb out of out_dir are one-line errors."""
    img = fake_nifti(tmp_path / "raw" / "GOLD.nii.gz", np.full((4, 4, 4), 0.5, np.float32))
    with pytest.raises(io.MedicalFileError, match="non-integer"):
        io.run_pipeline(io.raw_volumes({"GOLD.nii.gz": img}), tmp_path / "out")
    dcm = fake_dicom(tmp_path / "raw2" / "ct.dcm")
    with pytest.raises(io.MedicalFileError, match="not NIfTI"):
        io.run_pipeline([io.RawVolume("ct.nii.gz", dcm, "image")], tmp_path / "out")
    with pytest.raises(io.MedicalFileError, match="relative path"):
        io.run_pipeline([io.RawVolume("../escape.nii.gz", img, "image")], tmp_path / "out")


def test_run_pipeline_real(shared_data, tmp_path):
    """The BraTS case through the pipeline twice: identical hashes, raw files unchanged."""
    inputs = io.raw_volumes(io.dataset_files("brats_sample"))
    raw_md5 = [md5(v.path) for v in inputs]
    first = io.run_pipeline(inputs, tmp_path / "run1", spacing=2.0)
    second = io.run_pipeline(inputs, tmp_path / "run2", spacing=2.0)
    assert list(first["md5"]) == list(second["md5"])
    assert [md5(v.path) for v in inputs] == raw_md5
    seg = first.set_index("kind").loc["label"]
    assert seg["orientation"] == "RAS" and seg["shape"] == "121 x 121 x 78"


def test_truncated_nifti_is_a_clear_error(tmp_path):
    """A NIfTI file cut short (an interrupted download) gives a one-line error, not a zlib traceback."""
    path = fake_nifti(tmp_path / "raw" / "v.nii.gz", np.random.default_rng(0).random((20, 20, 20), dtype=np.float32))
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(io.MedicalFileError, match="truncated or damaged") as err:
        io.describe_file(path)
    assert "\n" not in str(err.value)
    with pytest.raises(io.MedicalFileError, match="truncated or damaged"):
        io.run_pipeline([io.RawVolume("v.nii.gz", path, "image")], tmp_path / "out")
