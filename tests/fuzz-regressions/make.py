"""Writes the fuzz regression corpus that crates/data/tests/hostile_files.rs and
tests/cli/recipes.rs replay: hand-made hostile files, one per fault a decoder or the
recipe reader must refuse without a panic, a hang or a runaway allocation, plus seeded
mutations of the example data. fuzz/run.sh adds what the fuzzers find to the same
folders. Run once from the repository root (the files are committed):

    python tests/fuzz-regressions/make.py

Needs pydicom and numpy (the test venv has both)."""
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

OUT = Path(__file__).resolve().parent
EXAMPLE = OUT.parent.parent / "datasets.example"


def write(folder, name, data):
    path = OUT / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def png(width, height, bit_depth=8, colour=0, body=b""):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")


def dicom(**attributes):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["radrun", str(sorted(attributes))])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("hostile.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 4, 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.arange(16, dtype=np.uint16).tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def mutate(data, rng):
    """One damaged copy: bytes overwritten, a length made huge, bits flipped, or cut."""
    out = bytearray(data)
    at = rng.randrange(max(len(out), 1))
    how = rng.randrange(4)
    if how == 0:
        for i in range(at, min(at + rng.randrange(1, 8), len(out))):
            out[i] = rng.randrange(256)
    elif how == 1:
        huge = struct.pack("<I", rng.randrange(0x01000000, 0xFFFFFFFF))
        out[at : at + 4] = huge[: len(out[at : at + 4])]
    elif how == 2:
        for _ in range(8):
            i = rng.randrange(max(len(out), 1))
            out[i] ^= 1 << rng.randrange(8)
    else:
        del out[at:]
    return bytes(out)


def main():
    # PNG and JPEG, as the raster fuzz target reads them (a first byte 0xFF: JPEG)
    write("raster", "png-100000x100000-header.png", png(100_000, 100_000))
    write("raster", "png-zero-width.png", png(0, 16))
    write("raster", "png-bit-depth-3.png", png(4, 4, bit_depth=3))
    write("raster", "png-idat-too-short.png", png(64, 64, body=b"\0" * 10))
    jpeg = sorted((EXAMPLE / "chest6").rglob("*.jpg"))[0].read_bytes()
    write("raster", "jpeg-cut-after-header.jpg", jpeg[: len(jpeg) // 8])
    scan = jpeg.index(b"\xff\xda") + 20
    middle = scan + (len(jpeg) - scan) // 2
    damaged = bytearray(jpeg)
    damaged[middle : middle + 8] = b"\xff\xd9\x00\xff\xc4\x13\x37\xff"
    write("raster", "jpeg-markers-inside-scan.jpg", bytes(damaged))
    write("raster", "jpeg-only-soi-eoi.jpg", b"\xff\xd8\xff\xd9")
    sof = jpeg.index(b"\xff\xc0")
    huge = bytearray(jpeg)
    huge[sof + 5 : sof + 9] = b"\xff\xff\xff\xff"  # height and width 65535
    write("raster", "jpeg-65535x65535-frame.jpg", bytes(huge))
    # DICOM, as the dicom fuzz target reads it
    write("dicom", "rows-zero.dcm", dicom(Rows=0))
    write("dicom", "65535x65535-with-32-bytes.dcm", dicom(Rows=65535, Columns=65535))
    write("dicom", "bits-allocated-zero.dcm", dicom(BitsAllocated=0))
    write("dicom", "bits-stored-above-allocated.dcm", dicom(BitsStored=40))
    write("dicom", "frames-2-billion.dcm", dicom(NumberOfFrames=2_000_000_000))
    write("dicom", "samples-per-pixel-200.dcm", dicom(SamplesPerPixel=200))
    write("dicom", "photometric-unknown.dcm", dicom(PhotometricInterpretation="NOT_A_SPACE"))
    plain = dicom()
    at = plain.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data
    huge_length = bytearray(plain)
    huge_length[at + 8 : at + 12] = b"\xf0\xff\xff\xff"
    write("dicom", "pixel-data-length-4-gb.dcm", bytes(huge_length))
    write("dicom", "cut-inside-pixel-data.dcm", plain[: at + 20])
    write("dicom", "preamble-only.dcm", b"\0" * 128 + b"DICM")
    # seeded mutations of the example data's files
    rng = random.Random(10)
    sources = {
        "dicom": sorted(EXAMPLE.rglob("*.dcm"))[::97],
        "raster": sorted(EXAMPLE.rglob("*.png"))[::211] + sorted(EXAMPLE.rglob("*.jpg"))[::53],
    }
    for folder, files in sources.items():
        for source in files:
            data = source.read_bytes()
            for m in range(3):
                write(folder, f"mutated-{m}-{source.name}", mutate(data, rng))
    # recipes, as the recipe fuzz target reads them
    recipes = {
        "not-utf8.toml": b"[data]\nroot = \"\xff\xfe\"\n",
        "nested-arrays.toml": b"[sweep.grid]\n\"train.learning_rate\" = " + b"[" * 2000 + b"]" * 2000 + b"\n",
        "huge-integer.toml": b"[data]\nimage_size = 99999999999999999999999\n",
        "grid-of-a-billion-runs.toml": b"[sweep.grid]\n" + b"".join(
            f'"train.seed" = [{", ".join(str(i) for i in range(1000))}]\n'.encode() if k == 0 else
            f'"train.epochs" = [{", ".join(str(i + 1) for i in range(1000))}]\n'.encode() if k == 1 else
            f'"train.batch_size" = [{", ".join(str(i + 1) for i in range(1000))}]\n'.encode()
            for k in range(3)),
        "random-search-trials-max.toml": b"[sweep.random]\ntrials = 4294967295\n\"train.learning_rate\" = { log_uniform = [1e-300, 1e300] }\n",
        "folds-max.toml": b"[split]\nfolds = 4294967295\nfold = 4294967295\n",
        "unknown-everything.toml": b"[\"\\u0000\"]\n\"\\ud7ff\" = nan\n[data]\nwindow = { preset = \"\" }\n",
        "duration-overflow.toml": b"[run]\nstale_after = \"99999999999999999h\"\ncheckpoint_every = \"-5s\"\n",
    }
    for name, data in recipes.items():
        write("recipe", name, data)


if __name__ == "__main__":
    main()
