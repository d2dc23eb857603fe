//! DICOM series (`data.series`): the files of one SeriesInstanceUID in one folder, or
//! the frames of one multi-frame file, ordered along the patient axis and turned into
//! slices, the middle slice, or slabs of neighbouring slices as channels.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::Error;
use crate::decode::{DicomInfo, ImageInfo};
use crate::pixels::Pixels;
use crate::sample::{Keep, Sample};
use crate::settings::Series;

/// A decoded image and what was read from its file; `frame` is set for the frames of a
/// multi-frame file read as a series.
pub(crate) struct Decoded {
    pub sample: Sample,
    pub info: ImageInfo,
    pub frame: Option<u32>,
}

/// A slice's position along the normal of its plane (ImagePositionPatient projected on
/// the cross product of the ImageOrientationPatient directions), when the file says.
pub fn position_along_normal(dicom: &DicomInfo) -> Option<f64> {
    let ([x, y, z], [r0, r1, r2, c0, c1, c2]) = (dicom.position_mm?, dicom.orientation?);
    let normal = [r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0];
    Some(x * normal[0] + y * normal[1] + z * normal[2])
}

/// Orders slices: by position along the normal, then InstanceNumber; `None` sorts first.
pub fn slice_ordering(a: (Option<f64>, Option<i64>), b: (Option<f64>, Option<i64>)) -> std::cmp::Ordering {
    a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1))
}

/// Where a slice lies: its position along the normal when the file says, then its
/// InstanceNumber (a frame's index for multi-frame files).
fn slice_order(d: &Decoded) -> (Option<f64>, Option<i64>) {
    let Some(info) = d.info.dicom.as_ref() else { return (None, None) };
    match d.frame {
        Some(frame) => (None, Some(i64::from(frame))),
        None => (position_along_normal(info), info.instance_number),
    }
}

/// The series an image belongs to: its folder and SeriesInstanceUID, or for a frame its
/// file. `None`: not part of a series (PNG, JPEG, DICOM without a SeriesInstanceUID).
fn series_key(d: &Decoded) -> Option<(PathBuf, String)> {
    if d.frame.is_some() {
        return Some((d.sample.path.clone(), String::new()));
    }
    let uid = d.info.dicom.as_ref()?.series_uid.clone()?;
    Some((d.sample.path.parent().map(PathBuf::from).unwrap_or_default(), uid))
}

/// Applies `data.series` to a split's decoded images (which keep their order otherwise),
/// each image of the result kept by `keep`.
pub(crate) fn arrange(decoded: Vec<Decoded>, mode: Series, keep: Keep<'_>) -> Result<Vec<Decoded>, Error> {
    if mode == Series::Files {
        return Ok(decoded);
    }
    let mut out = Vec::with_capacity(decoded.len());
    let mut series: BTreeMap<(PathBuf, String), Vec<Decoded>> = BTreeMap::new();
    for mut d in decoded {
        match series_key(&d) {
            Some(key) => series.entry(key).or_default().push(d),
            None => {
                d.sample.image = keep(std::mem::take(&mut d.sample.image))?;
                out.push(d);
            }
        }
    }
    for ((folder, uid), mut slices) in series {
        slices.sort_by(|a, b| {
            slice_ordering(slice_order(a), slice_order(b)).then_with(|| a.sample.path.cmp(&b.sample.path))
        });
        // a series is one group for splitting unless group_by gave its slices one
        let group = format!("series {} {uid}", crate::paths::path_text(&folder));
        for slice in &mut slices {
            slice.sample.origin.group.get_or_insert_with(|| group.clone());
        }
        // kept series by series: a split's slabs need not fit in memory at once
        let start = out.len();
        match mode {
            Series::Files | Series::Slices => out.extend(slices),
            Series::Middle => {
                let middle = slices.len() / 2;
                out.push(slices.swap_remove(middle));
            }
            Series::Slab(k) => {
                slabs(&mut slices, k as usize);
                out.extend(slices);
            }
        }
        for d in &mut out[start..] {
            d.sample.image = keep(std::mem::take(&mut d.sample.image))?;
        }
    }
    Ok(out)
}

/// Makes each slice the `k` slices centred on it as its planes (ends repeated).
fn slabs(slices: &mut [Decoded], k: usize) {
    let planes: Vec<Vec<f32>> = slices.iter().map(|s| s.sample.image.to_vec()).collect();
    let last = planes.len() - 1;
    for (i, slice) in slices.iter_mut().enumerate() {
        let half = k / 2;
        slice.sample.image =
            Pixels::pack((0..k).flat_map(|j| planes[(i + j).saturating_sub(half).min(last)].iter().copied()).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::FileKind;
    use crate::sample::Target;

    fn slice(name: &str, series: &str, z: f64, instance: i64, value: f32) -> Decoded {
        let dicom = DicomInfo {
            modality: Some("CT".into()),
            transfer_syntax: String::new(),
            photometric: "MONOCHROME2".into(),
            frames: 1,
            patient_id: None,
            study_uid: None,
            pixel_spacing_mm: None,
            window: (0.0, 1.0),
            bits_allocated: 16,
            samples_per_pixel: 1,
            rescale: None,
            series_uid: Some(series.into()),
            position_mm: Some([0.0, 0.0, z]),
            orientation: Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            instance_number: Some(instance),
            slice_thickness_mm: None,
        };
        Decoded {
            sample: Sample {
                path: PathBuf::from(format!("Train/a/{name}")),
                target: Target::Class(0),
                image: Pixels::pack(vec![value; 4]),
                pixel_spacing_mm: None,
                origin: Default::default(),
            },
            info: ImageInfo {
                kind: FileKind::Dicom,
                height: 2,
                width: 2,
                bits: 16,
                dicom: Some(dicom),
                notes: Vec::new(),
            },
            frame: None,
        }
    }

    /// File names and instance numbers disagree with the positions on purpose: the
    /// position along the normal decides.
    fn series() -> Vec<Decoded> {
        vec![
            slice("c.dcm", "1.2", 20.0, 1, 2.0),
            slice("a.dcm", "1.2", -10.0, 3, 0.0),
            slice("b.dcm", "1.2", 5.0, 2, 1.0),
            slice("z.dcm", "1.3", 0.0, 1, 9.0),
        ]
    }

    fn firsts(d: &[Decoded]) -> Vec<f32> {
        d.iter().map(|d| d.sample.image.to_vec()[0]).collect()
    }

    #[test]
    fn slices_follow_the_position_along_the_normal_and_share_a_group() {
        let out = arrange(series(), Series::Slices, &mut Ok).unwrap();
        assert_eq!(firsts(&out), vec![0.0, 1.0, 2.0, 9.0]);
        assert_eq!(out[0].sample.origin.group, out[2].sample.origin.group);
        assert_ne!(out[0].sample.origin.group, out[3].sample.origin.group);
    }

    #[test]
    fn middle_keeps_one_slice_per_series() {
        assert_eq!(firsts(&arrange(series(), Series::Middle, &mut Ok).unwrap()), vec![1.0, 9.0]);
    }

    #[test]
    fn slabs_stack_neighbours_and_repeat_the_ends() {
        let out = arrange(series(), Series::Slab(3), &mut Ok).unwrap();
        let planes: Vec<Vec<f32>> =
            out.iter().map(|d| d.sample.image.to_vec().chunks(4).map(|p| p[0]).collect()).collect();
        let want = [[0.0, 0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 2.0], [9.0, 9.0, 9.0]];
        // a slab is stored as 16-bit levels over its range (here 2): within half a level,
        // plus four float32 roundings of values up to 2 (one float32 step at 1 each at most;
        // see pixels.rs)
        for (got, want) in planes.iter().zip(want) {
            let bound = 2.0 / 65535.0 / 2.0 + 4.0 * f32::EPSILON;
            assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() <= bound), "{planes:?}");
        }
        assert_eq!(planes.len(), 4);
    }
}
