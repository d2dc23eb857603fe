//! Resizing to the recipe's image size, as Pillow does it (the tutorial's Keras loaded
//! images through Pillow): antialiased bilinear or bicubic convolution for intensities
//! (each output pixel averages the whole input area it covers when shrinking), or
//! Pillow's nearest neighbour; masks always by nearest neighbour (labels are never
//! interpolated).

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::F32;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};

use crate::decode::{GrayImage, LabelMask};
use crate::settings::Resize;

/// Resizes an intensity image to `height` x `width` (returned as is when already there).
pub fn resize_image(image: GrayImage, height: usize, width: usize, method: Resize) -> GrayImage {
    if image.height == height && image.width == width {
        return image;
    }
    let from = (image.height, image.width);
    let pixels = image
        .pixels
        .chunks_exact(image.height * image.width)
        .flat_map(|plane| match method {
            Resize::Nearest => nearest(plane, from, (height, width)),
            Resize::Bilinear => convolve(plane, from, (height, width), FilterType::Bilinear),
            // Pillow's bicubic kernel has a = -0.5: Catmull-Rom
            Resize::Bicubic => convolve(plane, from, (height, width), FilterType::CatmullRom),
        })
        .collect();
    GrayImage::stacked(height, width, image.planes, pixels)
}

/// Resizes a label mask with nearest-neighbour sampling.
pub fn resize_mask(mask: LabelMask, height: usize, width: usize) -> LabelMask {
    if mask.height == height && mask.width == width {
        return mask;
    }
    let labels = nearest(&mask.labels, (mask.height, mask.width), (height, width));
    LabelMask { height, width, labels }
}

/// Pillow's `NEAREST` resize (`ImagingScaleAffine`): output pixel i takes input pixel
/// trunc(s/2 + i s), s = input / output, with the position summed step by step in f64
/// as Pillow does, so that boundary cases round the same way.
fn nearest_indices(from: usize, to: usize) -> Vec<usize> {
    let step = from as f64 / to as f64;
    let mut position = step * 0.5;
    (0..to)
        .map(|_| {
            let index = (position as usize).min(from - 1);
            position += step;
            index
        })
        .collect()
}

fn nearest<T: Copy>(src: &[T], (sh, sw): (usize, usize), (dh, dw): (usize, usize)) -> Vec<T> {
    let columns = nearest_indices(sw, dw);
    nearest_indices(sh, dh).into_iter().flat_map(|r| columns.iter().map(move |&c| src[r * sw + c])).collect()
}

fn convolve(src: &[f32], (sh, sw): (usize, usize), (dh, dw): (usize, usize), filter: FilterType) -> Vec<f32> {
    let src_view = TypedImageRef::<F32>::from_buffer(sw as u32, sh as u32, bytemuck::cast_slice(src))
        .expect("source buffer matches its size");
    let mut out = vec![0f32; dh * dw];
    {
        let mut dst = TypedImage::<F32>::from_buffer(dw as u32, dh as u32, bytemuck::cast_slice_mut(&mut out))
            .expect("destination buffer matches its size");
        Resizer::new()
            .resize_typed(&src_view, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)))
            .expect("resizing between two valid gray images cannot fail");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_matches_pillow_bilinear() {
        // Reference: Pillow 13, Image.fromarray(a, "F").resize((2, 2), Image.BILINEAR)
        // on this 4x4 checkerboard of 2x2 blocks gives 0.24489796 / 0.75510204.
        let px = [0., 0., 1., 1., 0., 0., 1., 1., 1., 1., 0., 0., 1., 1., 0., 0.];
        let out = resize_image(GrayImage::new(4, 4, px.to_vec()), 2, 2, Resize::Bilinear);
        // both sum in float64 and round to float32 after each of the two passes (6e-8 at
        // most each), Pillow's values are printed to 8 digits (5e-9): 1e-5 is far above
        // that and far below what another filter or support gives
        for (got, want) in out.pixels.iter().zip([0.24489796, 0.75510204, 0.75510204, 0.24489796]) {
            assert!((got - want).abs() < 1e-5, "{:?}", out.pixels);
        }
        // A fine 1-pixel checkerboard shrunk by 4 must average to gray (antialiasing),
        // not alias to black or white.
        let fine: Vec<f32> = (0..64 * 64).map(|i| ((i / 64 + i % 64) % 2) as f32).collect();
        let out = resize_image(GrayImage::new(64, 64, fine), 16, 16, Resize::Bilinear);
        // not a rounding bound: aliasing gives 0 or 1, averaging 0.5 up to the filter's
        // edge weights
        assert!(out.pixels.iter().all(|&v| (v - 0.5).abs() < 0.05), "{:?}", &out.pixels[..8]);
    }

    #[test]
    fn nearest_takes_pillows_pixels() {
        // Pillow: trunc(s/2 + i s), s = from / to. 5 -> 3: s = 5/3, positions 0.83, 2.5,
        // 4.17 -> 0, 2, 4; 2 -> 5: s = 0.4, positions 0.2, 0.6, 1.0, 1.4, 1.8 -> 0, 0, 1, 1, 1
        assert_eq!(nearest_indices(5, 3), [0, 2, 4]);
        assert_eq!(nearest_indices(2, 5), [0, 0, 1, 1, 1]);
        assert_eq!(nearest_indices(4, 2), [1, 3]);
    }

    #[test]
    fn masks_keep_their_labels() {
        let mask = LabelMask { height: 4, width: 4, labels: vec![0, 0, 2, 2, 0, 0, 2, 2, 1, 1, 0, 0, 1, 1, 0, 0] };
        let out = resize_mask(mask, 8, 8);
        assert!(out.labels.iter().all(|l| [0, 1, 2].contains(l)));
        assert_eq!(out.labels[0], 0);
        assert_eq!(out.labels[7], 2);
        assert_eq!(out.labels[8 * 7], 1);
    }
}
