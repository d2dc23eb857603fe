//! Paths as radrun writes them: `/`-separated relative paths, and file names that are
//! not UTF-8 written losslessly. Every path or file name radrun writes for a person or a
//! script to read (CSV, JSON, the console, logs, report.html, error messages) goes
//! through [`path_text`], so two names that differ only in such bytes stay apart.

use std::path::{Path, PathBuf};

/// A path as `a/b/c` (what split.csv and the labels tables write).
pub fn slash_path(path: &Path) -> String {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| path_text(Path::new(c.as_os_str())))
        .collect::<Vec<_>>()
        .join("/")
}

/// A path as text, losslessly: bytes that are not UTF-8 (file names from old PACS
/// exports in Latin-1, say) are written `\xE9`, as Python's "backslashreplace" does, and a
/// backslash itself stays a backslash.
pub fn path_text(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut text = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        text.push_str(chunk.valid());
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02X}"));
        }
    }
    text
}

/// A file's name without its extension, as [`path_text`] writes it (the name of the
/// masks, overlays and heat maps made from an image); empty when the path has none.
pub fn stem_text(path: &Path) -> String {
    path.file_stem().map(|stem| path_text(Path::new(stem))).unwrap_or_default()
}

/// A distinct name for each of `paths` to write its outputs under: its [`stem_text`], or,
/// where another path has the same stem (an image of that name in two split folders
/// pooled), its path below the folder all `paths` share, `/` as `_` and without the
/// extension (`Train_Images_case1`); a name still taken gets `_2`, `_3`...
pub fn distinct_stems(paths: &[&Path]) -> Vec<String> {
    let stems: Vec<String> = paths.iter().map(|p| stem_text(p)).collect();
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for stem in &stems {
        *counts.entry(stem.as_str()).or_default() += 1;
    }
    let common = paths.iter().skip(1).fold(paths.first().and_then(|p| p.parent()).map(Path::to_path_buf), |acc, p| {
        let acc = acc?;
        acc.ancestors().find(|a| p.starts_with(a)).map(Path::to_path_buf)
    });
    let mut taken = std::collections::HashSet::new();
    paths
        .iter()
        .zip(&stems)
        .map(|(path, stem)| {
            let name = if counts[stem.as_str()] < 2 {
                stem.clone()
            } else {
                let relative = common.as_deref().and_then(|c| path.strip_prefix(c).ok()).unwrap_or(path);
                slash_path(&relative.with_extension("")).replace('/', "_")
            };
            let mut unique = name.clone();
            for n in 2.. {
                if taken.insert(unique.clone()) {
                    break;
                }
                unique = format!("{name}_{n}");
            }
            unique
        })
        .collect()
}

/// Serde's `serialize_with` for a path field written as [`path_text`] (serde alone fails
/// on a path that is not UTF-8).
pub fn serialize_path<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path_text(path))
}

pub(crate) fn serialize_paths<S: serde::Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(paths.iter().map(|p| path_text(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_that_collide_are_told_apart_by_their_folders() {
        let paths = ["/s/Train/Images/a.png", "/s/Test/Images/a.png", "/s/Test/Images/b.dcm"].map(Path::new);
        assert_eq!(distinct_stems(&paths), ["Train_Images_a", "Test_Images_a", "b"]);
        assert_eq!(distinct_stems(&[Path::new("/s/x/a.png")]), ["a"]);
        // a folder name that is another file's stem, and one path twice
        let paths = ["/s/T/a.png", "/s/U/a.png", "/s/T_a.png", "/s/U/a.png"].map(Path::new);
        assert_eq!(distinct_stems(&paths), ["T_a", "U_a", "T_a_2", "U_a_2"]);
    }
}
