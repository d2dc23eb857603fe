//! Each classification run's gallery of test images: the misclassified first, then
//! correct ones spread over the test set, each as the network saw it, with its Grad-CAM
//! map of the predicted class (`gallery/`, listed in `gallery.csv`). The report shows
//! it; `radrun predict --heatmaps` draws its maps the same way.

use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use radrun_data::Dataset;
use radrun_data::paths::path_text;
use radrun_metrics::argmax;
use radrun_models::Network;
use radrun_train::fit::{HostBatch, plain_batches};
use radrun_train::gradcam::{cell_centres, grad_cam};

use radrun_runner::store::{WriteError, write_csv, write_png};

/// The gallery's test images: up to `n`, misclassified first (most confident first),
/// then correct ones evenly spaced over the test set's order.
pub fn choose(truth: &[usize], probabilities: &[Vec<f32>], n: usize) -> Vec<usize> {
    let predicted: Vec<usize> = probabilities.iter().map(|p| argmax(p)).collect();
    let confidence = |i: usize| probabilities[i][predicted[i]];
    let mut wrong: Vec<usize> = (0..truth.len()).filter(|&i| predicted[i] != truth[i]).collect();
    wrong.sort_by(|&a, &b| confidence(b).total_cmp(&confidence(a)).then(a.cmp(&b)));
    wrong.truncate(n);
    let right: Vec<usize> = (0..truth.len()).filter(|&i| predicted[i] == truth[i]).collect();
    let room = (n - wrong.len()).min(right.len());
    wrong.extend((0..room).map(|k| right[k * right.len() / room]));
    wrong
}

/// A trained classifier and how to feed it, for Grad-CAM.
pub struct Cam<'a> {
    pub network: &'a Network,
    pub dataset: &'a Dataset,
    /// The stage the maps are taken at (see [`radrun_train::gradcam::cam_layer`]).
    pub layer: &'a str,
    pub batch_size: usize,
    pub channels: usize,
}

impl Cam<'_> {
    /// Grad-CAM maps of `classes[k]` for the test images `indices`, computed a batch at
    /// a time; `height * width` values each.
    pub fn maps(&self, indices: &[usize], classes: &[i64]) -> Vec<Vec<f32>> {
        let options = plain_batches(self.dataset, self.batch_size, self.channels);
        let (h, w) = (self.dataset.height as i64, self.dataset.width as i64);
        let centres = cell_centres(self.network, self.layer, [self.channels as i64, h, w]);
        indices
            .chunks(self.batch_size)
            .zip(classes.chunks(self.batch_size))
            .flat_map(|(chunk, classes)| {
                let batch = radrun_data::batch::make_batch(&self.dataset.test, chunk, &options);
                let (x, _) = HostBatch::new(batch, self.network.vs.device(), false).on_device();
                grad_cam(self.network, &x, self.layer, centres, classes)
            })
            .collect()
    }

    /// Test image `i` as the network saw it, gray in [0, 1]: the middle plane when it
    /// has several (windows, a slab of slices).
    pub fn gray(&self, i: usize) -> Vec<f32> {
        let plane = self.dataset.height * self.dataset.width;
        let image = &self.dataset.test.samples[i].image;
        let mut gray = vec![0.0; plane];
        image.unpack_into(image.len() / plane / 2 * plane, &mut gray);
        gray
    }
}

/// The gray image (intensities in [0, 1]) with the heat map over it in viridis, more
/// opaque where the map is hotter.
pub fn heat_overlay(gray: &[f32], heat: &[f32], height: usize, width: usize) -> RgbImage {
    RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let i = y as usize * width + x as usize;
        let (g, h) = (gray[i].clamp(0.0, 1.0), heat[i].clamp(0.0, 1.0));
        let color = ViridisRGB.get_color(h);
        let alpha = 0.65 * h;
        let mix = |c: u8| ((1.0 - alpha) * g * 255.0 + alpha * c as f32).round() as u8;
        Rgb([mix(color.0), mix(color.1), mix(color.2)])
    })
}

/// Values in [0, 1] (an image's intensities, a heat map) as 8-bit gray.
pub fn gray_image(values: &[f32], height: usize, width: usize) -> GrayImage {
    GrayImage::from_fn(width as u32, height as u32, |x, y| {
        Luma([(values[y as usize * width + x as usize].clamp(0.0, 1.0) * 255.0).round() as u8])
    })
}

/// Writes `gallery/` and `gallery.csv` into the run folder `dir`: the test images
/// with their `truth` and predicted `probabilities`.
pub fn write_gallery(
    dir: &Path,
    cam: &Cam,
    truth: &[usize],
    probabilities: &[Vec<f32>],
    n: usize,
) -> Result<(), WriteError> {
    let dataset = cam.dataset;
    let chosen = choose(truth, probabilities, n);
    let predicted: Vec<i64> = chosen.iter().map(|&i| argmax(&probabilities[i]) as i64).collect();
    let test = &dataset.test;
    let maps = cam.maps(&chosen, &predicted);
    let (h, w) = (dataset.height, dataset.width);
    let mut rows = Vec::new();
    for (k, (&i, heat)) in chosen.iter().zip(&maps).enumerate() {
        let sample = &test.samples[i];
        let gray = cam.gray(i);
        let names =
            [format!("gallery/{k:03}.png"), format!("gallery/{k:03}_gradcam.png"), format!("gallery/{k:03}_heat.png")];
        write_png(&dir.join(&names[0]), &gray_image(&gray, h, w))?;
        write_png(&dir.join(&names[1]), &heat_overlay(&gray, heat, h, w))?;
        write_png(&dir.join(&names[2]), &gray_image(heat, h, w))?;
        let p = predicted[k] as usize;
        let mut row = names.to_vec();
        row.extend([
            path_text(&sample.path),
            dataset.classes[truth[i]].clone(),
            dataset.classes[p].clone(),
            format!("{}", probabilities[i][p]),
        ]);
        rows.push(row);
    }
    let header = ["image", "gradcam", "heat", "file", "true_class", "predicted_class", "probability"].map(String::from);
    write_csv(&dir.join("gallery.csv"), &header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_come_first_most_confident_first_then_spread_correct_ones() {
        let truth = [0, 0, 1, 1, 0, 1, 0];
        let p = |a: f32| vec![a, 1.0 - a];
        // predicted: 0, 1 (wrong, 0.6), 1, 0 (wrong, 0.9), 0, 1, 0
        let probabilities = vec![p(0.9), p(0.4), p(0.2), p(0.9), p(0.8), p(0.3), p(0.7)];
        // the two errors, most confident first: 3 (0.9), then 1 (0.6); then the 4 - 2 = 2
        // places left go to the correct images [0, 2, 4, 5, 6] evenly spaced: positions
        // 0 * 5 / 2 = 0 and 1 * 5 / 2 = 2 of that list, images 0 and 4
        assert_eq!(choose(&truth, &probabilities, 4), vec![3, 1, 0, 4]);
        // with room for all, every correct image follows the errors in test-set order
        assert_eq!(choose(&truth, &probabilities, 7), vec![3, 1, 0, 2, 4, 5, 6]);
        assert_eq!(choose(&truth, &probabilities, 1), vec![3]);
        assert_eq!(choose(&truth, &probabilities, 20).len(), 7);
    }

    #[test]
    fn the_overlay_keeps_cold_pixels_and_colours_hot_ones() {
        let overlay = heat_overlay(&[0.5, 0.5], &[0.0, 1.0], 1, 2);
        assert_eq!(overlay.get_pixel(0, 0).0, [128, 128, 128]);
        let hot = overlay.get_pixel(1, 0).0;
        // viridis' top is yellow: red and green above blue
        assert!(hot[0] > hot[2] && hot[1] > hot[2], "{hot:?}");
    }
}
