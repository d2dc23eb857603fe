//! Volumes: a 3D image (one or more channels) with its geometry, the affine that takes a
//! voxel index to the patient's position in millimetres, in the NIfTI convention (RAS+:
//! x grows towards the patient's right, y towards anterior, z towards superior; nibabel's
//! and MONAI's). Spacing, origin and direction are read from the affine; reorienting to
//! RAS or LPS flips and permutes axes only, as nibabel's `as_closest_canonical` does, so
//! an oblique volume keeps its rotation (and says so) and no voxel is interpolated.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 4 x 4 affine, row-major: `world = affine · [i, j, k, 1]`.
pub type Affine = [[f64; 4]; 4];

/// A volume's voxels and geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Values after the file's scaling, channel after channel, each with its first axis
    /// fastest (index `i + nx * (j + ny * k)`, as NIfTI stores them).
    pub voxels: Vec<f32>,
    /// Voxels along the array's three axes (`i`, `j`, `k`).
    pub shape: [usize; 3],
    pub channels: usize,
    /// Voxel index to RAS+ millimetres.
    pub affine: Affine,
}

/// The axis order and directions `data.orientation` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Orientation {
    /// Axes towards the patient's right, anterior and superior (nibabel's canonical; the
    /// default).
    #[default]
    Ras,
    /// Towards left, posterior and superior (DICOM's and ITK's patient axes).
    Lps,
    /// As the file stores them.
    AsStored,
}

impl Orientation {
    /// The name as written in a recipe.
    pub fn name(self) -> &'static str {
        match self {
            Orientation::Ras => "RAS",
            Orientation::Lps => "LPS",
            Orientation::AsStored => "as_stored",
        }
    }
}

impl Serialize for Orientation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl schemars::JsonSchema for Orientation {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Orientation".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "enum": ["RAS", "ras", "LPS", "lps", "as_stored"] })
    }
}

impl<'de> Deserialize<'de> for Orientation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "RAS" | "ras" => Ok(Orientation::Ras),
            "LPS" | "lps" => Ok(Orientation::Lps),
            "as_stored" => Ok(Orientation::AsStored),
            other => Err(serde::de::Error::custom(format!(
                "unknown orientation \"{other}\"; expected \"RAS\", \"LPS\" or \"as_stored\""
            ))),
        }
    }
}

/// Where each array axis goes: the world axis it follows most closely (0 = x: R/L, 1 =
/// y: A/P, 2 = z: S/I) and whether it runs along (+1) or against (-1) it.
pub type AxisMap = [(usize, i8); 3];

impl Volume {
    /// The distance between voxel centres along each array axis, in mm.
    pub fn spacing(&self) -> [f64; 3] {
        spacing(&self.affine)
    }

    /// The position of voxel (0, 0, 0), in RAS+ mm.
    pub fn origin(&self) -> [f64; 3] {
        [self.affine[0][3], self.affine[1][3], self.affine[2][3]]
    }

    /// The unit direction of each array axis in RAS+ (column `a` is axis `a`).
    pub fn direction(&self) -> [[f64; 3]; 3] {
        direction(&self.affine)
    }

    /// The axes' codes, as nibabel's `aff2axcodes` spells them ("RAS", "LPI", ...).
    pub fn axis_codes(&self) -> String {
        axis_codes(&axis_map(&self.affine))
    }

    /// Whether an axis is not along a world axis (more than 1e-4 off): such a volume is
    /// kept as it is, its rotation in the affine, and reported.
    pub fn is_oblique(&self) -> bool {
        let d = self.direction();
        (0..3).any(|a| {
            let largest = (0..3).map(|r| d[r][a].abs()).fold(0.0, f64::max);
            (1.0 - largest).abs() > 1e-4
        })
    }

    /// The volume with its axes flipped and permuted to `orientation` (nibabel's
    /// `as_reoriented` with the closest axes, `io_orientation`); the voxels move, none
    /// is interpolated, and the affine follows so that every voxel keeps its position.
    pub fn reoriented(&self, orientation: Orientation) -> Volume {
        match orientation {
            Orientation::AsStored => self.clone(),
            Orientation::Ras => self.reoriented_to([(0, 1), (1, 1), (2, 1)]),
            Orientation::Lps => self.reoriented_to([(0, -1), (1, -1), (2, 1)]),
        }
    }

    /// The volume with its axes in the order and directions of `target` (for each output
    /// axis, the world axis it follows and its sign), e.g. a source file's own
    /// [`axis_map`] to lay an output back on it.
    pub fn reoriented_to(&self, target: AxisMap) -> Volume {
        let own = axis_map(&self.affine);
        // input axis i goes to the output axis following the same world axis
        let map: AxisMap = std::array::from_fn(|i| {
            let out = target.iter().position(|t| t.0 == own[i].0).expect("a permutation of the world axes");
            (out, own[i].1 * target[out].1)
        });
        let flips: [bool; 3] = std::array::from_fn(|i| map[i].1 < 0);
        let mut shape = [0; 3];
        for i in 0..3 {
            shape[map[i].0] = self.shape[i];
        }
        let [nx, ny, nz] = self.shape;
        let strides = [1, nx, nx * ny];
        // the source offset of output index n: base + sum over output axes of n[a] * step[a]
        let mut step = [0isize; 3];
        let mut base = 0isize;
        for i in 0..3 {
            let stride = strides[i] as isize;
            step[map[i].0] = if flips[i] { -stride } else { stride };
            if flips[i] {
                base += (self.shape[i] as isize - 1) * stride;
            }
        }
        let per_channel = nx * ny * nz;
        let mut voxels = Vec::with_capacity(self.voxels.len());
        for channel in self.voxels.chunks_exact(per_channel.max(1)) {
            for k in 0..shape[2] as isize {
                for j in 0..shape[1] as isize {
                    let row = base + j * step[1] + k * step[2];
                    voxels.extend((0..shape[0] as isize).map(|i| channel[(row + i * step[0]) as usize]));
                }
            }
        }
        // old index o[i] = flip ? shape[i] - 1 - n[a] : n[a]; the new affine is A · M
        let mut m = [[0.0; 4]; 4];
        m[3][3] = 1.0;
        for i in 0..3 {
            m[i][map[i].0] = if flips[i] { -1.0 } else { 1.0 };
            m[i][3] = if flips[i] { self.shape[i] as f64 - 1.0 } else { 0.0 };
        }
        Volume { voxels, shape, channels: self.channels, affine: multiply(&self.affine, &m) }
    }
}

fn multiply(a: &Affine, b: &Affine) -> Affine {
    std::array::from_fn(|r| std::array::from_fn(|c| (0..4).map(|k| a[r][k] * b[k][c]).sum()))
}

fn spacing(affine: &Affine) -> [f64; 3] {
    std::array::from_fn(|c| (0..3).map(|r| affine[r][c] * affine[r][c]).sum::<f64>().sqrt())
}

fn direction(affine: &Affine) -> [[f64; 3]; 3] {
    let zooms = spacing(affine);
    std::array::from_fn(|r| std::array::from_fn(|c| if zooms[c] > 0.0 { affine[r][c] / zooms[c] } else { 0.0 }))
}

/// The closest world axis and sign of each array axis: nibabel's `io_orientation`. The
/// direction matrix is replaced by its nearest rotation (the orthogonal factor of its
/// polar decomposition, so a sheared affine maps as nibabel maps it), then axes are
/// assigned strongest first, each world axis once.
pub fn axis_map(affine: &Affine) -> AxisMap {
    let mut r = nearest_rotation(direction(affine));
    // strongest input axis first (nibabel 5.4: argsort of min(-R**2) over rows, stable)
    let mut order = [0usize, 1, 2];
    let strength = |c: usize, r: &[[f64; 3]; 3]| (0..3).map(|row| r[row][c] * r[row][c]).fold(0.0, f64::max);
    order.sort_by(|&a, &b| strength(b, &r).total_cmp(&strength(a, &r)));
    let mut map = [(0, 1); 3];
    let mut taken = [false; 3];
    for input in order {
        let column: [f64; 3] = std::array::from_fn(|row| r[row][input]);
        let Some(out) = (0..3).filter(|&o| !taken[o]).max_by(|&a, &b| column[a].abs().total_cmp(&column[b].abs()))
        else {
            continue;
        };
        map[input] = (out, if column[out] < 0.0 { -1 } else { 1 });
        taken[out] = true;
        r[out] = [0.0; 3];
    }
    map
}

/// The orthogonal factor of `m`'s polar decomposition (Newton's iteration
/// `X <- (X + X^-T) / 2`, which converges quadratically for an invertible `m`); `m`
/// itself when it is singular (a degenerate affine, whose axes are then read as they are).
pub(crate) fn nearest_rotation(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut x = m;
    for _ in 0..50 {
        let Some(inverse) = invert3(&x) else { return m };
        let next: [[f64; 3]; 3] = std::array::from_fn(|r| std::array::from_fn(|c| (x[r][c] + inverse[c][r]) / 2.0));
        let change = (0..9).map(|i| (next[i / 3][i % 3] - x[i / 3][i % 3]).abs()).fold(0.0, f64::max);
        x = next;
        if change < 1e-15 {
            break;
        }
    }
    x
}

fn cofactor(m: &[[f64; 3]; 3], r: usize, c: usize) -> f64 {
    let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
    let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
    m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
}

pub(crate) fn determinant(m: &[[f64; 3]; 3]) -> f64 {
    (0..3).map(|c| m[0][c] * cofactor(m, 0, c)).sum()
}

pub(crate) fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = determinant(m);
    if det.abs() < 1e-12 {
        return None;
    }
    Some(std::array::from_fn(|r| std::array::from_fn(|c| cofactor(m, c, r) / det)))
}

/// nibabel's `ornt2axcodes` with the labels (L, R), (P, A), (I, S).
pub fn axis_codes(map: &AxisMap) -> String {
    const LABELS: [[char; 2]; 3] = [['L', 'R'], ['P', 'A'], ['I', 'S']];
    map.iter().map(|&(axis, sign)| LABELS[axis][usize::from(sign > 0)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(shape: [usize; 3], affine: Affine) -> Volume {
        let voxels = (0..shape.iter().product::<usize>()).map(|v| v as f32).collect();
        Volume { voxels, shape, channels: 1, affine }
    }

    /// The world position of voxel `index`.
    fn world(affine: &Affine, index: [usize; 3]) -> [f64; 3] {
        std::array::from_fn(|r| (0..3).map(|c| affine[r][c] * index[c] as f64).sum::<f64>() + affine[r][3])
    }

    fn value(v: &Volume, [i, j, k]: [usize; 3]) -> f32 {
        v.voxels[i + v.shape[0] * (j + v.shape[1] * k)]
    }

    #[test]
    fn an_lps_volume_reoriented_to_ras_keeps_every_voxel_where_it_was() {
        // DICOM-like: i to the left, j to posterior, k superior; 2 x 3 x 4 voxels
        let affine = [[-0.8, 0.0, 0.0, 10.0], [0.0, -0.7, 0.0, 20.0], [0.0, 0.0, 5.0, -30.0], [0.0, 0.0, 0.0, 1.0]];
        let lps = volume([2, 3, 4], affine);
        assert_eq!(lps.axis_codes(), "LPS");
        let ras = lps.reoriented(Orientation::Ras);
        assert_eq!((ras.axis_codes(), ras.shape), ("RAS".to_string(), [2, 3, 4]));
        for index in [[0, 0, 0], [1, 2, 3], [1, 0, 2]] {
            let moved = [1 - index[0], 2 - index[1], index[2]];
            assert_eq!(value(&ras, moved), value(&lps, index));
            assert_eq!(world(&ras.affine, moved), world(&lps.affine, index));
        }
        assert_eq!(ras.reoriented(Orientation::Lps), lps);
    }

    #[test]
    fn permuted_axes_are_put_in_ras_order() {
        // i along superior, j along right, k along posterior (a sagittal-stored volume)
        let affine = [[0.0, 2.0, 0.0, 1.0], [0.0, 0.0, -3.0, 2.0], [1.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 1.0]];
        let stored = volume([4, 2, 3], affine);
        assert_eq!(stored.axis_codes(), "SRP");
        let ras = stored.reoriented(Orientation::Ras);
        assert_eq!((ras.axis_codes(), ras.shape, ras.spacing()), ("RAS".to_string(), [2, 3, 4], [2.0, 3.0, 1.0]));
        let index = [3, 1, 2];
        let moved = [1, 2 - 2, 3];
        assert_eq!(value(&ras, moved), value(&stored, index));
        assert_eq!(world(&ras.affine, moved), world(&stored.affine, index));
    }

    #[test]
    fn an_oblique_volume_is_flipped_to_its_closest_axes_and_keeps_its_rotation() {
        let (c, s) = (20f64.to_radians().cos(), 20f64.to_radians().sin());
        let affine = [[-c, s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        let oblique = volume([3, 3, 2], affine);
        assert!(oblique.is_oblique());
        assert_eq!(oblique.axis_codes(), "LAS");
        let ras = oblique.reoriented(Orientation::Ras);
        assert!(ras.is_oblique() && ras.axis_codes() == "RAS");
        for index in [[0, 0, 0], [2, 1, 1]] {
            let moved = [2 - index[0], index[1], index[2]];
            let (a, b) = (world(&ras.affine, moved), world(&oblique.affine, index));
            assert!((0..3).all(|r| (a[r] - b[r]).abs() < 1e-12), "{a:?} {b:?}");
        }
    }
}
