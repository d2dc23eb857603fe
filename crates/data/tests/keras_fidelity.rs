//! Augmentation and resizing against Keras and Pillow themselves (
//! tests/reference/keras_fidelity.py).
//!
//! - 240 seeded transforms (rotation, row and column shift, per-axis zoom, flips) of
//!   non-square images, each fill mode in turn, equal the tutorial-era Keras
//!   (keras-preprocessing 1.1.0, the oldest that TensorFlow 2.1 accepts) to 1e-5.
//! - 80 more on square images equal Keras 3's legacy `ImageDataGenerator` once its
//!   parameters are mapped as docs/fidelity.md says (Keras 3 swaps rows and columns and moved
//!   the pivot; on a non-square image it turns about a point off the centre).
//! - 2,000 of radrun's draws with the tutorial's settings on a 175 x 250 image have the
//!   distribution of Keras' `get_random_transform` (two-sample Kolmogorov-Smirnov per
//!   parameter, and the same ranges).
//! - `data.resize = "nearest"` equals Pillow's `NEAREST` (what `flow_from_directory`
//!   used) to the pixel; bilinear and bicubic equal Pillow's to 1e-5.

use radrun_data::augment::Transform;
use radrun_data::resize::resize_image;
use radrun_data::{AugmentSettings, FillMode, GrayImage, Resize};
use serde_json::Value;

fn reference(name: &str) -> Option<Value> {
    let path = radrun_data::testing::reference_dir()?.join("keras").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(serde_json::from_str(&text).unwrap())
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn number(case: &Value, key: &str) -> f64 {
    case[key].as_f64().unwrap_or_else(|| panic!("{key} missing"))
}

/// Keras 3 swaps rows and columns (the same picture once the angle is negated and the
/// row and column parameters trade places) and turns about the true centre, one pixel
/// above and left of the tutorial's pivot: on a square image that is radrun's transform
/// with this shift, t + Z (1, 1) - R⁻¹ (1, 1).
fn keras3_shift(theta: f64, (tr, tc): (f64, f64), (zr, zc): (f64, f64)) -> (f64, f64) {
    let (sin, cos) = theta.sin_cos();
    (tr + zr - (cos + sin), tc + zc - (cos - sin))
}

#[test]
fn transforms_equal_keras_for_every_fill_mode() {
    let Some(reference) = reference("augment.json") else { return };
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 320);
    let mut per_fill = std::collections::BTreeMap::new();
    for (i, case) in cases.iter().enumerate() {
        let (h, w) = (case["height"].as_u64().unwrap() as usize, case["width"].as_u64().unwrap() as usize);
        let keras3 = case["keras"].as_str().unwrap().starts_with('3');
        let (theta, tx, ty) = (number(case, "theta").to_radians(), number(case, "tx"), number(case, "ty"));
        let (zx, zy) = (number(case, "zx"), number(case, "zy"));
        let transform = Transform {
            theta: if keras3 { -theta } else { theta },
            shift: if keras3 { keras3_shift(-theta, (ty, tx), (zy, zx)) } else { (tx, ty) },
            zoom: if keras3 { (zy, zx) } else { (zx, zy) },
            flip_horizontal: case["flip_horizontal"].as_bool().unwrap(),
            flip_vertical: case["flip_vertical"].as_bool().unwrap(),
            ..Transform::IDENTITY
        };
        let fill: FillMode = serde_json::from_value(case["fill"].clone()).unwrap();
        let image: Vec<f32> = floats(&case["image"]).into_iter().map(|v| v as f32).collect();
        let mut out = vec![0.0; h * w];
        transform.apply_image(&image, h, w, fill, number(case, "fill_value") as f32, &mut out);
        let want = floats(&case["transformed"]);
        assert_eq!(want.len(), out.len(), "case {i}");
        let worst = out.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
        // both place the samples in float64 (1e-14 of a pixel apart) and blend values of
        // [0, 1] in float64, rounding once to float32: at most one float32 step (1.2e-7)
        // apart. 1e-5 is far above that and far below a pivot, shift or fill rule one
        // pixel off (1e-2 and more on these smooth images)
        assert!(worst <= 1e-5, "case {i} ({h}x{w}, {fill:?}, {transform:?}): max difference {worst}");
        *per_fill.entry(format!("{fill:?}")).or_insert(0) += 1;
    }
    assert_eq!(per_fill.values().copied().collect::<Vec<_>>(), vec![80; 4], "{per_fill:?}");
}

/// The two-sample Kolmogorov-Smirnov statistic.
fn ks_statistic(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

#[test]
fn draws_follow_keras_get_random_transform() {
    let Some(reference) = reference("augment.json") else { return };
    let keras = &reference["random_transform"];
    let (h, w) = (keras["height"].as_u64().unwrap() as usize, keras["width"].as_u64().unwrap() as usize);
    let settings = AugmentSettings::default(); // the tutorial's
    let draws: Vec<Transform> = (0..2000).map(|i| Transform::draw(&settings, 14, 0, i, h, w)).collect();
    let ours: [(&str, Vec<f64>); 5] = [
        ("theta", draws.iter().map(|t| t.theta.to_degrees()).collect()),
        ("tx", draws.iter().map(|t| t.shift.0).collect()),
        ("ty", draws.iter().map(|t| t.shift.1).collect()),
        ("zx", draws.iter().map(|t| t.zoom.0).collect()),
        ("zy", draws.iter().map(|t| t.zoom.1).collect()),
    ];
    // critical value at alpha = 0.001 for two samples of 2,000
    let critical = 1.949 * (2.0f64 / 2000.0).sqrt();
    for (key, values) in ours {
        let theirs = floats(&keras[key]);
        let d = ks_statistic(values.clone(), theirs.clone());
        assert!(d < critical, "{key}: Kolmogorov-Smirnov D = {d:.4} (critical {critical:.4})");
        let range =
            |v: &[f64]| (v.iter().copied().fold(f64::MAX, f64::min), v.iter().copied().fold(f64::MIN, f64::max));
        let ((lo, hi), (klo, khi)) = (range(&values), range(&theirs));
        let span = khi - klo;
        // the extremes of 2,000 draws of a uniform parameter fall short of their ends by
        // more than 2 % of the range with probability 0.98^2000 = 3e-18
        assert!(
            (lo - klo).abs() < 0.02 * span && (hi - khi).abs() < 0.02 * span,
            "{key}: [{lo}, {hi}] vs Keras [{klo}, {khi}]"
        );
    }
}

#[test]
fn resizing_equals_pillow() {
    let Some(cases) = reference("resize.json") else { return };
    for case in cases.as_array().unwrap() {
        let size = |k: &str| case[k].as_u64().unwrap() as usize;
        let (h, w, th, tw) = (size("height"), size("width"), size("target_height"), size("target_width"));
        let pixels: Vec<f32> = floats(&case["pixels"]).into_iter().map(|v| v as f32 / 255.0).collect();
        // nearest: the same 8-bit values, up to x / 255 * 255 in float32 (255 x 6e-8 =
        // 1.5e-5 of a level; 1e-3 of one tells any other pixel); bilinear and bicubic: both
        // sum in float64 and round to float32 (6e-8) after each pass, the second pass
        // carrying the first's rounding by its weights' absolute sum (under 1.3 with
        // bicubic's negative lobes): each side within 1.4e-7 of the exact result, 2.8e-7
        // apart; 1e-5 is far above that and far below another filter or support
        for (method, key, tolerance) in [
            (Resize::Nearest, "nearest", 1e-3),
            (Resize::Bilinear, "bilinear", 1e-5),
            (Resize::Bicubic, "bicubic", 1e-5),
        ] {
            let out = resize_image(GrayImage::new(h, w, pixels.clone()), th, tw, method);
            let scale = if method == Resize::Nearest { 255.0 } else { 1.0 };
            let want = floats(&case[key]);
            assert_eq!(want.len(), out.pixels.len(), "{key}");
            let worst =
                out.pixels.iter().zip(&want).map(|(a, b)| (f64::from(*a) * scale - b).abs()).fold(0.0, f64::max);
            assert!(worst <= tolerance, "{h}x{w} -> {th}x{tw} {key}: max difference {worst}");
        }
    }
}
