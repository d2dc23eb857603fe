//! Damaged and hostile image files: refused with the fault named, never a panic, a hang
//! or an allocation out of proportion to the file. A seeded byte mutation of real files
//! (the example data's DICOM, PNG and JPEG files, plus pydicom's corpus when the
//! references are present) replays thousands of damaged files in seconds; peak heap use
//! is measured by a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use radrun_data::FileKind;
use radrun_data::decode::{DecodeOptions, decode_bytes};
use radrun_data::nifti::{self, NiftiOptions};
use rand::{Rng, SeedableRng};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap growth allowed while decoding a file: a bounded multiple of its size plus the
/// decoded frame, which `max_pixels` caps (1 megapixel here).
fn allowed(file_len: usize) -> usize {
    64 * file_len + (128 << 20)
}

const MAX_PIXELS: u64 = 1_000_000;

/// Decodes `path`, returning the error text (or None) and the peak heap growth; fails
/// the test on a panic or a decode that looks like a hang.
fn decode_checked(path: &Path) -> (Option<String>, usize) {
    let kind = FileKind::of(path).unwrap_or(FileKind::Dicom);
    decode_checked_as(path, kind)
}

/// [`decode_checked`] for a file read as `kind` whatever its name.
fn decode_checked_as(path: &Path, kind: FileKind) -> (Option<String>, usize) {
    let options = DecodeOptions { max_pixels: MAX_PIXELS, ..DecodeOptions::default() };
    let bytes = std::fs::read(path).unwrap();
    measured(path, move || decode_bytes(path, bytes, kind, &options).map(|_| ()).map_err(|e| e.to_string()))
}

/// Runs `read` (one file's decoding), returning its error text (or None) and the peak
/// heap growth; fails the test on a panic or a decode that looks like a hang.
fn measured(
    path: &Path,
    read: impl FnOnce() -> Result<(), String> + std::panic::UnwindSafe,
) -> (Option<String>, usize) {
    // one decode at a time, so that the peak is this decode's
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let result = std::panic::catch_unwind(read);
    let elapsed = started.elapsed();
    let grown = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let result = result.unwrap_or_else(|_| panic!("decoding {} panicked", path.display()));
    // a hang, not a speed: decoding never loops without end. Speed is the benchmarks'
    // (bench/decode.sh); a damaged JPEG-LS frame that CharLS decodes as garbage takes
    // 12 s on a 2-core AMD EPYC, so the bound sits well above what any machine of the
    // kind needs for a file of at most `MAX_PIXELS` pixels
    assert!(elapsed < Duration::from_secs(120), "decoding {} took {elapsed:?}", path.display());
    (result.err(), grown)
}

fn example_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.example");
    radrun_data::testing::files_under(&root).into_iter().filter(|f| FileKind::of(f).is_some()).collect()
}

fn corpus_files() -> Vec<PathBuf> {
    let Some(dir) = radrun_data::testing::reference_dir() else { return Vec::new() };
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("dicom.json")).unwrap()).unwrap();
    let mut files: Vec<PathBuf> = index.iter().map(|e| PathBuf::from(e["file"].as_str().unwrap())).collect();
    files.dedup();
    files
}

/// One damaged copy of `bytes`: bytes overwritten, a length field made huge, bits
/// flipped, or the file cut short.
fn mutate(bytes: &[u8], rng: &mut impl Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = rng.random_range(0..out.len().max(1));
    match rng.random_range(0..4) {
        0 => {
            for b in out.iter_mut().skip(at).take(rng.random_range(1..8)) {
                *b = rng.random();
            }
        }
        1 => {
            let huge: u32 = rng.random_range(0x0100_0000..=u32::MAX);
            for (i, b) in huge.to_le_bytes().into_iter().enumerate() {
                if let Some(slot) = out.get_mut(at + i) {
                    *slot = b;
                }
            }
        }
        2 => {
            for _ in 0..8 {
                let i = rng.random_range(0..out.len().max(1));
                if let Some(b) = out.get_mut(i) {
                    *b ^= 1 << rng.random_range(0..8);
                }
            }
        }
        _ => out.truncate(at),
    }
    out
}

#[test]
fn damaged_files_never_panic_hang_or_allocate_out_of_proportion() {
    let mut sources: Vec<PathBuf> = example_files().into_iter().step_by(7).collect();
    sources.extend(corpus_files().into_iter().filter(|f| FileKind::of(f).is_some()));
    assert!(sources.len() >= 50, "{} source files", sources.len());
    let scratch = tempfile::tempdir().unwrap();
    // RADRUN_MUTATION_SEED explores other mutations (the suite uses seed 10)
    let seed = std::env::var("RADRUN_MUTATION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut cases, mut refused) = (0, 0);
    for source in &sources {
        let bytes = std::fs::read(source).unwrap();
        let mutations = if bytes.len() > 100_000 { 2 } else { 12 };
        for m in 0..mutations {
            let damaged = mutate(&bytes, &mut rng);
            let path = scratch.path().join(format!("{m}-{}", source.file_name().unwrap().to_string_lossy()));
            std::fs::write(&path, &damaged).unwrap();
            let (error, grown) = decode_checked(&path);
            if grown > allowed(damaged.len()) {
                let kept = std::env::temp_dir().join(format!("radrun-hostile-{}", path.file_name().unwrap().display()));
                std::fs::copy(&path, &kept).unwrap();
                panic!(
                    "decoding a damaged copy of {} ({} bytes, kept as {}) grew the heap by {grown} bytes",
                    source.display(),
                    damaged.len(),
                    kept.display()
                );
            }
            if let Some(error) = error {
                assert!(error.contains(&path.display().to_string()), "the error must name the file: {error}");
                refused += 1;
            }
            std::fs::remove_file(&path).unwrap();
            cases += 1;
        }
    }
    eprintln!("{cases} damaged files, {refused} refused, none panicked");
    assert!(cases >= 1000 && refused > cases / 10, "{cases} cases, {refused} refused");
}

/// The committed regression corpus (tests/fuzz-regressions/: hand-made hostile files,
/// seeded mutations of the example data, and what fuzz/run.sh's fuzzers find), replayed
/// as each fuzz target reads it. The recipe target's findings are replayed by the CLI
/// tests (tests/cli/recipes.rs).
#[test]
fn fuzz_findings_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz-regressions");
    for (folder, kind) in [("dicom", FileKind::Dicom), ("raster", FileKind::Png)] {
        let entries = radrun_data::testing::files_under(&root.join(folder));
        // a missing or emptied corpus must not pass having replayed nothing
        assert!(
            entries.len() >= 10,
            "{}: {} files; the corpus is committed",
            root.join(folder).display(),
            entries.len()
        );
        for path in entries {
            let kind = if kind == FileKind::Png && std::fs::read(&path).unwrap().first() == Some(&0xFF) {
                FileKind::Jpeg
            } else {
                kind
            };
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            let (_, grown) = decode_checked_as(&path, kind);
            assert!(grown <= allowed(len), "{}: heap grew by {grown} bytes", path.display());
        }
    }
}

/// The NIfTI regressions (tests/fuzz-regressions/nifti/: the damaged files of the
/// reference script, a gzip bomb declaring 4096^3 voxels among them, and what
/// `fuzz/run.sh` finds) are refused or read within the same heap bound, without a panic.
#[test]
fn nifti_fuzz_findings_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz-regressions/nifti");
    let entries = radrun_data::testing::files_under(&root);
    assert!(entries.len() >= 10, "{}: {} files; the corpus is committed", root.display(), entries.len());
    let options = NiftiOptions { max_voxels: MAX_PIXELS, channels_from_last_axis: true, nan_to_zero: true };
    for path in entries {
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        let (_, grown) = measured(&path, || nifti::read(&path, &options).map(|_| ()).map_err(|e| e.to_string()));
        assert!(grown <= allowed(len), "{}: heap grew by {grown} bytes", path.display());
    }
}

/// pydicom's UN_sequence.dcm (674 bytes) once drove the decoder to 3.7 GB.
#[test]
fn tiny_malformed_files_stay_small() {
    let files = corpus_files();
    if files.is_empty() {
        return; // no references outside scripts/test.sh (reference_dir said so; CI fails there)
    }
    let tiny: Vec<&PathBuf> =
        files.iter().filter(|f| f.ends_with("UN_sequence.dcm") || f.ends_with("badVR.dcm")).collect();
    assert_eq!(tiny.len(), 2, "UN_sequence.dcm and badVR.dcm are in pydicom's corpus");
    for file in tiny {
        let len = std::fs::metadata(file).unwrap().len() as usize;
        let (error, grown) = decode_checked(file);
        assert!(error.is_some(), "{} must be refused", file.display());
        assert!(grown <= 64 * len + (1 << 20), "{}: heap grew by {grown} bytes", file.display());
    }
}

#[test]
fn broken_headers_are_refused_with_the_fault_named() {
    let files = corpus_files();
    if files.is_empty() {
        return; // no references outside scripts/test.sh (reference_dir said so; CI fails there)
    }
    let find = |name: &str| files.iter().find(|f| f.ends_with(name)).cloned();
    for (name, fault) in [
        ("MR_small_rows_0.dcm", "0 x 64 pixels (Rows x Columns)"),
        ("CT_small_slope_not_a_number.dcm", "RescaleSlope (0028,1053) is not a number"),
        ("MR_truncated.dcm", "Could not read 8192 value bytes for element tagged (7FE0,0010)"),
    ] {
        let file = find(name).unwrap_or_else(|| panic!("{name} is missing from pydicom's corpus"));
        let (error, _) = decode_checked(&file);
        let error = error.unwrap_or_else(|| panic!("{name} must be refused"));
        assert!(error.contains(fault), "{name}: {error}");
    }
}

#[test]
fn a_jpeg_damaged_in_the_middle_is_refused() {
    let jpeg = example_files().into_iter().find(|f| f.extension().is_some_and(|e| e == "jpg")).expect("a JPEG");
    let mut bytes = std::fs::read(&jpeg).unwrap();
    let scan_start = bytes.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a scan") + 20;
    let middle = scan_start + (bytes.len() - scan_start) / 2;
    bytes[middle..middle + 16]
        .copy_from_slice(&[0xFF, 0xD9, 0x00, 0xFF, 0xC4, 0x13, 0x37, 0xFF, 0xFE, 0, 0, 0, 0, 0, 0, 0]);
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("damaged.jpg");
    std::fs::write(&path, &bytes).unwrap();
    let (error, _) = decode_checked(&path);
    let error = error.expect("a damaged JPEG is refused");
    assert!(error.contains("damaged.jpg") && error.contains("the JPEG is damaged"), "{error}");
}

#[test]
fn images_above_max_pixels_are_refused_before_decoding() {
    let scratch = tempfile::tempdir().unwrap();
    // a PNG that declares 16000 x 16000 pixels and holds none
    let path = scratch.path().join("huge.png");
    std::fs::write(&path, png_header(16_000, 16_000)).unwrap();
    let (error, grown) = decode_checked(&path);
    let error = error.expect("refused");
    assert!(error.contains("16000 x 16000 = 256000000 pixels, above data.max_pixels = 1000000"), "{error}");
    assert!(grown < 1 << 20, "grew by {grown}");
}

/// A PNG with a colour profile (iCCP chunk) that inflates to 400 MiB from under a
/// megabyte: it passes the pixel limit, and inflating it cost as much memory as the
/// profile's size. Decoding stays within the image's own size plus the metadata budget
/// (16 MiB), and gives the pixels the PNG without the profile gives.
#[test]
fn a_png_colour_profile_bomb_is_not_inflated() {
    use std::io::Write;
    let source = example_files().into_iter().find(|f| f.extension().is_some_and(|e| e == "png")).expect("a PNG");
    let png = std::fs::read(&source).unwrap();
    let mut profile = b"bomb\0\0".to_vec(); // name, compression method 0 (zlib)
    let mut zlib = flate2::write::ZlibEncoder::new(&mut profile, flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..400 {
        zlib.write_all(&zeros).unwrap();
    }
    zlib.finish().unwrap();
    assert!(profile.len() < 1 << 20, "{} bytes", profile.len());
    // the iCCP chunk goes right after IHDR (8 bytes of signature, 25 of IHDR)
    let mut chunk = (profile.len() as u32).to_be_bytes().to_vec();
    let body = [&b"iCCP"[..], &profile].concat();
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    let bomb = [&png[..33], &chunk, &png[33..]].concat();
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("bomb.png");
    std::fs::write(&path, &bomb).unwrap();
    let (error, grown) = decode_checked(&path);
    assert_eq!(error, None);
    assert!(grown < 32 << 20, "decoding grew the heap by {grown} bytes");
    let options = DecodeOptions { max_pixels: MAX_PIXELS, ..DecodeOptions::default() };
    let (with, _) = decode_bytes(&path, bomb, FileKind::Png, &options).unwrap();
    let (without, _) = decode_bytes(&source, png, FileKind::Png, &options).unwrap();
    assert_eq!(with.pixels, without.pixels);
}

/// A gray 8-bit PNG of the given size holding no pixel data.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    for chunk in [&b"IDAT"[..], b"IEND"] {
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(chunk);
        png.extend_from_slice(&crc32fast::hash(chunk).to_be_bytes());
    }
    png
}

/// Headers that contradict themselves, each once a panic, an overflow or NaN pixels
/// (found in review): refused with the fault named.
#[test]
fn contradictory_headers_are_refused_not_panics() {
    use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
    use dicom_dictionary_std::tags;
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.example/chest6/Train/cardiomegaly/SYN-TR0010_1.dcm");
    let scratch = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<DataElement<dicom_object::InMemDicomObject>>, &str)> = vec![
        (
            "ybr422_one_sample",
            vec![DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, PrimitiveValue::from("YBR_FULL_422"))],
            "YBR_FULL_422 with 1 sample(s) per pixel is not valid",
        ),
        (
            "frames_overflow",
            vec![
                DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from("4138709734")),
                DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(1000u16)),
                DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(1000u16)),
            ],
            "Pixel Data holds",
        ),
        (
            "window_nan",
            vec![
                DataElement::new(tags::WINDOW_CENTER, VR::DS, PrimitiveValue::from("NaN")),
                DataElement::new(tags::WINDOW_WIDTH, VR::DS, PrimitiveValue::from("400")),
            ],
            "WindowCenter (0028,1050) is not a number",
        ),
        (
            "lut_descriptor_negative",
            vec![DataElement::new(
                tags::MODALITY_LUT_SEQUENCE,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(vec![dicom_object::InMemDicomObject::from_element_iter([
                    DataElement::new(tags::LUT_DESCRIPTOR, VR::SS, dicom_value!(I16, [-1, 0, 16])),
                    DataElement::new(tags::LUT_DATA, VR::OW, dicom_value!(U16, [1, 2, 3])),
                ])]),
            )],
            "not three whole numbers",
        ),
    ];
    for (name, elements, fault) in cases {
        let mut obj = dicom_object::open_file(&source).unwrap();
        for element in elements {
            obj.put(element);
        }
        let path = scratch.path().join(format!("{name}.dcm"));
        obj.write_to_file(&path).unwrap();
        let (error, _) = decode_checked(&path);
        let error = error.unwrap_or_else(|| panic!("{name} must be refused"));
        assert!(error.contains(fault), "{name}: {error}");
    }
}

/// Text where a number belongs (an operator's slip: a record number typed into the
/// wrong field) may identify a patient: the error names the attribute and the fault,
/// never the value, for every number radrun reads from a header. Attributes whose value
/// radrun reads only when it is usable (positions, spacing, thickness) are ignored, which
/// echoes nothing either.
#[test]
fn text_in_a_number_attribute_is_named_never_echoed() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.example/chest6/Train/cardiomegaly/SYN-TR0010_1.dcm");
    let scratch = tempfile::tempdir().unwrap();
    let secret = "MRN123456 DOE^JANE";
    // (attribute, its VR, whether a wrong value refuses the file)
    let attributes = [
        (tags::RESCALE_SLOPE, VR::DS, "RescaleSlope", true),
        (tags::RESCALE_INTERCEPT, VR::DS, "RescaleIntercept", true),
        (tags::WINDOW_CENTER, VR::DS, "WindowCenter", true),
        (tags::WINDOW_WIDTH, VR::DS, "WindowWidth", true),
        (tags::NUMBER_OF_FRAMES, VR::IS, "NumberOfFrames", true),
        (tags::PIXEL_SPACING, VR::DS, "PixelSpacing", false),
        (tags::IMAGER_PIXEL_SPACING, VR::DS, "ImagerPixelSpacing", false),
        (tags::SLICE_THICKNESS, VR::DS, "SliceThickness", false),
        (tags::IMAGE_POSITION_PATIENT, VR::DS, "ImagePositionPatient", false),
        (tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "ImageOrientationPatient", false),
        (tags::INSTANCE_NUMBER, VR::IS, "InstanceNumber", false),
        // binary attributes, written as unknown VR holding text, as some anonymisers do
        (tags::ROWS, VR::UN, "Rows", false),
        (tags::COLUMNS, VR::UN, "Columns", false),
        (tags::BITS_ALLOCATED, VR::UN, "BitsAllocated", false),
        (tags::BITS_STORED, VR::UN, "BitsStored", false),
        (tags::SAMPLES_PER_PIXEL, VR::UN, "SamplesPerPixel", false),
        (tags::PIXEL_REPRESENTATION, VR::UN, "PixelRepresentation", false),
    ];
    for (tag, vr, name, refused) in attributes {
        let mut obj = dicom_object::open_file(&source).unwrap();
        let value = match vr {
            VR::UN => PrimitiveValue::U8(format!("{secret}?").bytes().collect()),
            _ => PrimitiveValue::from(secret),
        };
        obj.put(DataElement::new(tag, vr, value));
        let path = scratch.path().join(format!("{name}.dcm"));
        obj.write_to_file(&path).unwrap();
        let (error, _) = decode_checked(&path);
        if let Some(error) = &error {
            for part in secret.split(' ') {
                assert!(!error.contains(part), "{name}: the value reached the message: {error}");
            }
        }
        if refused {
            let error = error.unwrap_or_else(|| panic!("{name}: text instead of a number must be refused"));
            assert!(error.contains(&format!("{name} ")) && error.contains("not a number"), "{name}: {error}");
        }
    }
}
