"""Reference volumes for radrun's NIfTI reader, from nibabel (the library users check
against): every NIfTI file of nibabel's own test data, and files written here for what
that data lacks (every datatype a scanner writes, both byte orders, NIfTI-2, each way an
affine is given, scaling rules, 4D), each with what nibabel reads from it.

OUT/volumes.json lists the cases. For each one nibabel reads: its shape, its best affine,
its sform and qform codes, and, after `as_closest_canonical`, the shape, affine and axis
codes; the voxels of `get_fdata()` (float64, first axis fastest, as NIfTI stores them) in
OUT/<n>.f64 and those of the canonical image in OUT/<n>-ras.f64. For each file nibabel
refuses: its error. OUT/bad/ holds damaged files, each with the words radrun's refusal
must contain.
"""

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def header(version, shape, dtype, endian="<"):
    h = (nib.Nifti1Header if version == 1 else nib.Nifti2Header)(endianness=endian)
    h.set_data_shape(shape)
    h.set_data_dtype(dtype)
    h.set_zooms(((0.8, 0.7, 2.5) + (1.0,) * len(shape))[: len(shape)])
    return h


def write_raw(path, h, data):
    """A single-file NIfTI written byte by byte: the header as given (nibabel would
    recompute its scaling on save), then the raw voxels at vox_offset."""
    offset = 352 if isinstance(h, nib.Nifti1Header) and not isinstance(h, nib.Nifti2Header) else 544
    h["vox_offset"] = offset
    endian = h.endianness
    block = h.binaryblock + b"\0" * (offset - len(h.binaryblock))
    raw = np.asarray(data, dtype=h.get_data_dtype().newbyteorder(endian)).tobytes(order="F")
    payload = block + raw
    path.write_bytes(gzip.compress(payload, mtime=0) if path.name.endswith(".gz") else payload)


def synthetic(folder: Path):
    """Files for what nibabel's test data lacks."""
    rng = np.random.default_rng(7)
    shape = (5, 4, 3)
    files = []
    for dtype in ["uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]:
        info = np.iinfo(dtype) if dtype[0] in "ui" else None
        low, high = (info.min, info.max) if info else (-3e3, 3e3)
        data = rng.uniform(max(low, -2**40), min(high, 2**40), size=shape).astype(dtype)
        for endian in "<>":
            h = header(1, shape, dtype, endian)
            h.set_sform(np.diag([0.8, 0.7, 2.5, 1]) + np.array([[0, 0, 0, 10], [0, 0, 0, -4], [0, 0, 0, 7], [0, 0, 0, 0]]), 1)
            path = folder / f"{dtype}-{'le' if endian == '<' else 'be'}.nii"
            write_raw(path, h, data)
            files.append(path)
    # scaling: a slope and an intercept; slope 0 (none); slope NaN (none)
    data = rng.integers(-500, 500, size=shape).astype("int16")
    for name, slope, inter in [("scaled", 0.25, -1024.0), ("slope-zero", 0.0, 50.0), ("slope-nan", np.nan, 50.0)]:
        h = header(1, shape, "int16")
        h["scl_slope"], h["scl_inter"] = slope, inter
        h.set_qform(np.diag([0.8, 0.7, 2.5, 1]), 1)
        write_raw(folder / f"{name}.nii.gz", h, data)
        files.append(folder / f"{name}.nii.gz")
    # affines: qform only with a rotation and qfac -1; neither code (pixdim); sform over qform
    rotation = nib.eulerangles.euler2mat(0.3, -0.2, 0.1)
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ np.diag([0.8, 0.7, -2.5])
    oblique[:3, 3] = [12.5, -30.0, 7.25]
    h = header(1, shape, "int16")
    h.set_qform(oblique, 2)
    h.set_sform(None, 0)
    write_raw(folder / "qform-oblique-qfac.nii.gz", h, data)
    h = header(1, shape, "int16")
    h.set_qform(None, 0)
    h.set_sform(None, 0)
    write_raw(folder / "pixdim-only.nii", h, data)
    lps = np.diag([-0.8, -0.7, 2.5, 1.0])
    lps[:3, 3] = [40.0, 50.0, -60.0]
    h = header(1, shape, "int16")
    h.set_qform(np.diag([0.8, 0.7, 2.5, 1]), 1)
    h.set_sform(lps, 2)
    write_raw(folder / "sform-lps.nii.gz", h, data)
    # NIfTI-2, both byte orders, and a 4D file (two channels)
    for endian in "<>":
        h = header(2, shape, "float32", endian)
        h.set_sform(lps, 4)
        path = folder / f"nifti2-{'le' if endian == '<' else 'be'}.nii.gz"
        write_raw(path, h, rng.normal(size=shape).astype("float32"))
        files.append(path)
    h = header(1, shape + (2,), "int16")
    h.set_sform(lps, 1)
    write_raw(folder / "two-channels.nii.gz", h, rng.integers(0, 100, size=shape + (2,)).astype("int16"))
    return files + [folder / n for n in ["qform-oblique-qfac.nii.gz", "pixdim-only.nii", "sform-lps.nii.gz",
                                          "two-channels.nii.gz"]]


def bad(folder: Path):
    """Damaged files: (file, words the refusal must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    shape = (4, 4, 3)
    good = np.arange(np.prod(shape), dtype="int16").reshape(shape)
    cases = []

    def case(name, words, h=None, data=good, transform=None):
        path = folder / name
        h = h if h is not None else header(1, shape, "int16")
        write_raw(path, h, data)
        if transform:
            path.write_bytes(transform(path.read_bytes()))
        cases.append(dict(file=str(path), words=words))

    def with_header(**fields):
        h = header(1, shape, "int16")
        for k, v in fields.items():
            h[k] = v
        return h

    case("truncated.nii.gz", ["ends at byte", "cut"], transform=lambda b: gzip.compress(gzip.decompress(b)[:400], mtime=0))
    bomb = header(1, (4096, 4096, 4096), "int16")
    case("bomb.nii.gz", ["voxels", "max_voxels", "Nothing was decompressed"], h=bomb, data=good[:0].ravel())
    dims = np.array([3, 4, 0, 3, 1, 1, 1, 1])
    case("zero-dimension.nii", ["dimension of zero"], h=with_header(dim=dims))
    case("negative-dimension.nii", ["dimension of zero or below"], h=with_header(dim=np.array([3, 4, -4, 3, 1, 1, 1, 1])))
    case("pixdim-zero.nii", ["pixdim[2]", "positive, finite"], h=with_header(pixdim=np.array([1, 1, 0, 1, 1, 1, 1, 1])))
    case("pixdim-nan.nii", ["pixdim[3]", "positive, finite"], h=with_header(pixdim=np.array([1, 1, 1, np.nan, 1, 1, 1, 1])))
    nan = good.astype("float32")
    nan[1, 2, 0] = np.nan
    case("nan-voxel.nii", ["NaN", "data.nan"], h=header(1, shape, "float32"), data=nan)
    case("unknown-datatype.nii", ["datatype code 99"], transform=lambda b: b[:70] + np.int16(99).tobytes() + b[72:])
    case("offset-past-end.nii", ["ends at byte"], transform=lambda b: b[:108] + np.float32(4096).tobytes() + b[112:])
    case("rgb.nii", ["RGB"], h=header(1, shape, "RGB"), data=np.zeros(shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]))
    case("complex.nii", ["complex64", "magnitude"], h=header(1, shape, "complex64"), data=good.astype("complex64"))
    case("five-dimensions.nii", ["5 dimensions"], h=header(1, shape + (1, 2), "int16"), data=np.zeros(shape + (1, 2), "int16"))
    case("four-dimensions.nii", ["4D", "channels_from"], h=header(1, shape + (2,), "int16"), data=np.zeros(shape + (2,), "int16"))
    case("not-nifti.nii", ["not a NIfTI-1 or NIfTI-2 file"], transform=lambda b: b"not a volume" * 40)
    return cases


def sitk_series(folder: Path):
    """SimpleITK's ImageSeriesReader of a folder's series: voxels (x fastest) and LPS geometry."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(files)
    image = reader.Execute()
    voxels = sitk.GetArrayFromImage(image).astype("<f8")  # [z, y, x]: C order is x fastest
    return voxels, dict(
        size=list(image.GetSize()),
        spacing=list(image.GetSpacing()),
        origin=list(image.GetOrigin()),
        direction=list(image.GetDirection()),
        files=[str(Path(f)) for f in files],
    )


def series(out: Path):
    """The example's CT series against SimpleITK, and damaged copies of one (pydicom):
    (cases, bad cases with the words radrun's refusal must contain)."""
    import shutil

    import pydicom

    folders = sorted(p for p in (REPO / "datasets.example" / "ctslices").glob("*/*/*") if p.is_dir())[:6]
    cases = []
    for number, folder in enumerate(folders):
        voxels, facts = sitk_series(folder)
        name = f"series-{number:02}.f64"
        voxels.ravel().tofile(out / name)
        cases.append(dict(folder=str(folder), voxels=name, **facts))
    # the example's series are axial; these copies of one are sagittal (files named in the
    # opposite order of their positions) and oblique, with 0.7 x 0.8 mm pixels
    for name, row, column in [
        ("sagittal", [0, 1, 0], [0, 0, -1]),
        ("oblique", *nib.eulerangles.euler2mat(0.3, 0.2, 0.1).T[:2]),
    ]:
        folder = out / "series" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        normal = np.cross(row, column)
        files = sorted(folders[0].glob("*.dcm"))
        for k, path in enumerate(files):
            ds = pydicom.dcmread(path)
            ds.ImageOrientationPatient = [float(v) for v in list(row) + list(column)]
            ds.ImagePositionPatient = [float(v) for v in np.array([12.5, -30.0, 7.0]) + 1.75 * k * normal]
            ds.PixelSpacing = [0.7, 0.8]
            ds.save_as(folder / f"{len(files) - k:02}.dcm")
        voxels, facts = sitk_series(folder)
        voxel_file = f"series-{name}.f64"
        voxels.ravel().tofile(out / voxel_file)
        cases.append(dict(folder=str(folder), voxels=voxel_file, **facts))
    bad_root = out / "series-bad"
    source = folders[0]
    slices = sorted(source.glob("*.dcm"))

    def damaged(name, words, change):
        folder = bad_root / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for path in slices:
            shutil.copy(path, folder / path.name)
        change(sorted(folder.glob("*.dcm")))
        return dict(folder=str(folder), words=words)

    def edit(path, **values):
        ds = pydicom.dcmread(path)
        for k, v in values.items():
            setattr(ds, k, v)
        ds.save_as(path)

    def shifted(files, index, dz):
        ds = pydicom.dcmread(files[index])
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        edit(files[index], ImagePositionPatient=[x, y, z + dz])

    bad = [
        damaged("gap", ["a gap", "slice(s) are missing"], lambda f: f[len(f) // 2].unlink()),
        damaged("uneven", ["uneven spacing"], lambda f: shifted(f, len(f) // 2, 0.4)),
        damaged("duplicate", ["at one position", "duplicate"], lambda f: edit(
            f[1], ImagePositionPatient=list(pydicom.dcmread(f[0]).ImagePositionPatient))),
        damaged("orientation", ["different planes"], lambda f: edit(f[2], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])),
        damaged("one-slice", ["1 slice(s)"], lambda f: [p.unlink() for p in f[1:]]),
    ]
    return cases, bad


def enhanced_ct(path: Path, reverse: bool):
    """A synthetic Enhanced CT Image (multi-frame) of 5 frames of 8 x 6 int16 values,
    0.7 x 0.8 mm pixels 2.5 mm apart (SliceThickness 2.0 on purpose), intercept -1024,
    each frame's position in its PerFrameFunctionalGroupsSequence; `reverse`: the frames
    stored from the top down."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def item(**values):
        ds = Dataset()
        for k, v in values.items():
            setattr(ds, k, v)
        return Sequence([ds])

    uid = lambda *parts: generate_uid(entropy_srcs=["radrun-enhanced-ct", *map(str, parts)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    meta.MediaStorageSOPInstanceUID = uid(path.name)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uid("study"), uid("series", reverse), uid("for")
    ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "SYNTHETIC", 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    frames, rows, columns = 5, 6, 8
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    shared.PixelMeasuresSequence = item(PixelSpacing=[0.7, 0.8], SliceThickness=2.0)
    shared.PlaneOrientationSequence = item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    shared.PixelValueTransformationSequence = item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in range(frames):
        z = 5 + 2.5 * (frames - 1 - k if reverse else k)
        group = Dataset()
        group.PlanePositionSequence = item(ImagePositionPatient=[-10, -20, z])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    values = np.arange(frames)[:, None, None] * 1000 + np.arange(rows)[None, :, None] * 10 + np.arange(columns)
    ds.PixelData = values.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def multiframe(out: Path):
    """Multi-frame files as volumes: pydicom's RT Dose files (15 frames placed by their
    GridFrameOffsetVector) and synthetic Enhanced CT files (per-frame positions, frames
    stored up and down), each against SimpleITK's ReadImage turned to LPS by DICOMOrient
    (so that frames stored top down compare with radrun's ascending order). SimpleITK
    leaves DoseGridScaling to the user (`scale`: radrun's values are SimpleITK's times
    it), and swaps the 16-bit halves of the big-endian RT Dose's 32-bit values, so that
    file's values come from pydicom, its geometry from the little-endian copy."""
    import pydicom
    import SimpleITK as sitk
    from pydicom.data import get_testdata_file

    folder = out / "multiframe"
    folder.mkdir(parents=True, exist_ok=True)
    files = [Path(get_testdata_file(name)) for name in ("rtdose.dcm", "rtdose_rle.dcm", "rtdose_expb.dcm")]
    for reverse in (False, True):
        path = folder / f"enhanced-ct{'-top-down' if reverse else ''}.dcm"
        enhanced_ct(path, reverse)
        files.append(path)
    cases = []
    for number, path in enumerate(files):
        geometry_from = files[0] if path.name == "rtdose_expb.dcm" else path
        image = sitk.DICOMOrient(sitk.ReadImage(str(geometry_from)), "LPS")
        ds = pydicom.dcmread(path)
        if path.name == "rtdose_expb.dcm":
            voxels = ds.pixel_array.astype("<f8")  # frames in file order: ascending z here
        else:
            voxels = sitk.GetArrayFromImage(image).astype("<f8")
        name = f"multiframe-{number:02}.f64"
        voxels.ravel().tofile(out / name)
        cases.append(dict(
            file=str(path), voxels=name, scale=float(getattr(ds, "DoseGridScaling", 1.0)),
            size=list(image.GetSize()), spacing=list(image.GetSpacing()),
            origin=list(image.GetOrigin()), direction=list(image.GetDirection()),
        ))
    return cases


def resampling(out: Path):
    """scipy.ndimage.zoom of a random volume (x fastest, F order) to other shapes, with
    orders 0, 1 and 3, and nnU-Net's anisotropic way (in-plane with order 3, then the
    coarse axis with order 0); nnU-Net's per-label resampling of a label map."""
    from scipy import ndimage

    rng = np.random.default_rng(11)
    volume = rng.normal(size=(7, 9, 5)) * 100.0
    labels = np.zeros((7, 9, 5))
    labels[2:5, 3:7, 1:4] = 1
    labels[3:4, 4:6, 2:3] = 2
    volume.ravel(order="F").astype("<f8").tofile(out / "resample-input.f64")
    labels.ravel(order="F").astype("<f8").tofile(out / "resample-labels.f64")
    cases = []
    for number, (shape, order) in enumerate([((11, 6, 8), 0), ((11, 6, 8), 1), ((11, 6, 8), 3), ((4, 13, 5), 3), ((7, 9, 1), 1)]):
        zoomed = ndimage.zoom(volume, np.array(shape) / np.array(volume.shape), order=order, mode="constant", grid_mode=False)
        assert zoomed.shape == shape
        name = f"resample-{number}.f64"
        zoomed.ravel(order="F").astype("<f8").tofile(out / name)
        cases.append(dict(shape=list(shape), orders=[order] * 3, voxels=name))
    # nnU-Net's separate-z: each z slice in-plane with order 3, then z with order 0
    shape = (11, 6, 8)
    plane = np.stack([ndimage.zoom(volume[:, :, z], np.array(shape[:2]) / np.array(volume.shape[:2]), order=3,
                                   mode="constant", grid_mode=False) for z in range(volume.shape[2])], axis=2)
    aniso = ndimage.zoom(plane, (1, 1, shape[2] / volume.shape[2]), order=0, mode="constant", grid_mode=False)
    aniso.ravel(order="F").astype("<f8").tofile(out / "resample-aniso.f64")
    cases.append(dict(shape=list(shape), orders=[3, 3, 0], voxels="resample-aniso.f64"))
    # nnU-Net's resize_segmentation with order 1: each label as a 0/1 map, kept at >= 0.5
    seg = np.zeros(shape)
    for label in [1, 2]:
        mask = ndimage.zoom((labels == label).astype(float), np.array(shape) / np.array(labels.shape), order=1,
                            mode="constant", grid_mode=False)
        seg[mask >= 0.5] = label
    seg.ravel(order="F").astype("<f8").tofile(out / "resample-seg.f64")
    return dict(cases=cases, labels_shape=list(shape), labels_voxels="resample-seg.f64")


def intensities(out: Path):
    """nnU-Net's CT normalisation (percentiles 0.5 and 99.5, mean and SD of the training
    foreground, numpy) and its z-score, over all voxels and within the nonzero ones."""
    rng = np.random.default_rng(5)
    images = [rng.normal(40, 300, size=(6, 5, 4)), rng.normal(-200, 150, size=(6, 5, 4))]
    images[1][0, 0, :] = 0.0
    labels = [(rng.random(size=(6, 5, 4)) > 0.6).astype(float) for _ in images]
    for n, (image, label) in enumerate(zip(images, labels)):
        image.ravel(order="F").astype("<f4").tofile(out / f"intensity-image-{n}.f32")
        label.ravel(order="F").astype("<f4").tofile(out / f"intensity-labels-{n}.f32")
    # the voxels as radrun holds them: float32
    images = [i.astype("<f4").astype(float) for i in images]
    foreground = np.concatenate([i[l > 0] for i, l in zip(images, labels)])
    lower, upper = np.percentile(foreground, 0.5), np.percentile(foreground, 99.5)
    mean, sd = foreground.mean(), foreground.std()
    ct = (np.clip(images[1], lower, upper) - mean) / max(sd, 1e-8)
    ct.ravel(order="F").tofile(out / "intensity-ct.f64")
    z_all = (images[1] - images[1].mean()) / max(images[1].std(), 1e-8)
    z_all.ravel(order="F").tofile(out / "intensity-zscore.f64")
    mask = images[1] != 0
    z_mask = np.zeros_like(images[1])
    z_mask[mask] = (images[1][mask] - images[1][mask].mean()) / max(images[1][mask].std(), 1e-8)
    z_mask.ravel(order="F").tofile(out / "intensity-zscore-nonzero.f64")
    return dict(lower=lower, upper=upper, mean=mean, sd=sd)


def describe(img):
    canonical = nib.as_closest_canonical(img)
    return dict(
        shape=[int(s) for s in img.shape],
        affine=img.affine.tolist(),
        sform_code=int(img.header["sform_code"]),
        qform_code=int(img.header["qform_code"]),
        codes="".join(nib.aff2axcodes(img.affine)),
        ras_shape=[int(s) for s in canonical.shape],
        ras_affine=canonical.affine.tolist(),
    ), canonical


def write(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    theirs = Path(nib.__file__).parent / "tests" / "data"
    files = sorted(p for p in theirs.iterdir() if p.name.endswith((".nii", ".nii.gz")))
    (out / "synthetic").mkdir(parents=True, exist_ok=True)
    files += synthetic(out / "synthetic")
    cases = []
    for number, path in enumerate(files):
        entry = dict(file=str(path))
        try:
            img = nib.load(path)
            if len(img.shape) > 4:  # CIFTI and 5D+: radrun refuses them, naming the shape
                cases.append(dict(entry, nibabel="read", shape=[int(s) for s in img.shape]))
                continue
            facts, canonical = describe(img)
            img.get_fdata().ravel(order="F").astype("<f8").tofile(out / f"{number:03}.f64")
            canonical.get_fdata().ravel(order="F").astype("<f8").tofile(out / f"{number:03}-ras.f64")
            cases.append(dict(entry, nibabel="read", voxels=f"{number:03}.f64", **facts))
        except Exception as e:  # nibabel cannot: radrun must refuse it too
            cases.append(dict(entry, nibabel=f"error: {type(e).__name__}: {e}"[:300]))
    series_cases, series_bad = series(out)
    (out / "volumes.json").write_text(
        json.dumps(
            dict(cases=cases, bad=bad(out / "bad"), series=series_cases, series_bad=series_bad,
                 multiframe=multiframe(out), resampling=resampling(out), intensity=intensities(out)),
            indent=1,
        )
    )
