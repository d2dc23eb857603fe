//! The low-level writers every stored file goes through: one atomic writer (a temporary
//! file in the same folder, synced, then renamed; removed on any error, so an interrupted
//! process never leaves half a file), CSV with formula-like cells neutralised, PNG, and
//! the host name a record names, radrun's cache folder. Imports nothing of radrun.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors writing run files. The message names the file; its source says why (shown
/// after it in every error chain, once).
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", radrun_data::paths::path_text(path))]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The one atomic writer: `fill` writes the content to a temporary path in the folder
/// of `path`, which is then synced and renamed over `path`. On any error the temporary
/// file is removed and `path` is untouched.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), std::io::Error>,
) -> Result<(), WriteError> {
    let err = |source| WriteError { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    // as any file the user writes (0666 less the umask), not tempfile's private 0600:
    // colleagues and other machines read runs folders
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(err)?;
    fill(tmp.path()).map_err(err)?;
    std::fs::File::open(tmp.path()).and_then(|f| f.sync_all()).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

pub fn remove_if_present(path: &Path) -> Result<(), WriteError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(WriteError { path: path.to_path_buf(), source: e }),
        _ => Ok(()),
    }
}

/// An I/O error from a library's message: a full disk is said as the system says it
/// ("No space left on device"), not as the library's debug text.
pub fn plain_io_error(message: String) -> std::io::Error {
    if message.contains("StorageFull") || message.contains("No space left on device") {
        std::io::Error::from_raw_os_error(libc::ENOSPC)
    } else {
        std::io::Error::other(message)
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_with(path, |tmp| std::fs::File::create(tmp)?.write_all(bytes))
}

/// Writes a PNG atomically.
pub fn write_png<P>(path: &Path, image: &image::ImageBuffer<P, Vec<P::Subpixel>>) -> Result<(), WriteError>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    let bytes =
        png_bytes(image).map_err(|e| WriteError { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
    write_atomic(path, &bytes)
}

/// An image encoded as PNG.
pub fn png_bytes<P>(image: &image::ImageBuffer<P, Vec<P::Subpixel>>) -> Result<Vec<u8>, image::ImageError>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
{
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    Ok(bytes)
}

/// Column names as a CSV header.
pub fn columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// `--csv-raw`: write CSV cells as they are, formulas included.
static CSV_RAW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Asks [`write_csv`] to leave cells that look like spreadsheet formulas as they are
/// (the `--csv-raw` flag); once per process.
pub fn write_raw_csv_cells() {
    let _ = CSV_RAW.set(true);
}

/// A cell a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, a tab
/// or a carriage return, and is not a number) gets a leading apostrophe, OWASP's advice
/// against CSV injection: a class folder named `=HYPERLINK(...)` must not become a link
/// when a clinician opens predictions.csv.
fn neutralised(cell: &str) -> std::borrow::Cow<'_, str> {
    if is_formula_like(cell) && !CSV_RAW.get().copied().unwrap_or(false) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

fn is_formula_like(cell: &str) -> bool {
    cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && cell.parse::<f64>().is_err()
}

/// A cell of a CSV file radrun wrote, as it was before [`neutralised`] (for the files
/// radrun reads back: predictions.csv, split.csv).
pub fn read_cell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(original) if is_formula_like(original) => original,
        _ => cell,
    }
}

/// Writes rows as CSV atomically, formula-like cells neutralised (see [`neutralised`]).
pub fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<(), WriteError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let io = |e: csv::Error| WriteError { path: path.to_path_buf(), source: std::io::Error::other(e) };
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        writer.write_record(row.iter().map(|cell| neutralised(cell).into_owned())).map_err(io)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| WriteError { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) })?;
    write_atomic(path, &bytes)
}

/// A number for CSV: full precision, empty when missing or NaN.
pub fn num(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

/// The machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// radrun's cache folder: `$RADRUN_CACHE`, else `$XDG_CACHE_HOME/radrun`, else
/// `~/.cache/radrun`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RADRUN_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("radrun")
}
