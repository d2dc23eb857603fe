//! Resizing to the recipe's image size: antialiased bilinear convolution for intensities
//! (each output pixel averages the whole input area it covers when shrinking), nearest
//! neighbour for masks (labels are never interpolated).

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::{F32, U8};
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};

use crate::decode::{GrayImage, LabelMask};

/// Resizes an intensity image to `height` x `width` (returned as is when already there).
pub fn resize_image(image: GrayImage, height: usize, width: usize) -> GrayImage {
    if image.height == height && image.width == width {
        return image;
    }
    let pixels = image
        .pixels
        .chunks_exact(image.height * image.width)
        .flat_map(|plane| {
            resize_plane::<F32, f32>(
                plane,
                (image.height, image.width),
                (height, width),
                ResizeAlg::Convolution(FilterType::Bilinear),
            )
        })
        .collect();
    GrayImage::stacked(height, width, image.planes, pixels)
}

/// Resizes a label mask with nearest-neighbour sampling.
pub fn resize_mask(mask: LabelMask, height: usize, width: usize) -> LabelMask {
    if mask.height == height && mask.width == width {
        return mask;
    }
    let labels = resize_plane::<U8, u8>(&mask.labels, (mask.height, mask.width), (height, width), ResizeAlg::Nearest);
    LabelMask { height, width, labels }
}

fn resize_plane<P, T>(src: &[T], (sh, sw): (usize, usize), (dh, dw): (usize, usize), alg: ResizeAlg) -> Vec<T>
where
    P: fast_image_resize::PixelTrait,
    T: bytemuck::Pod + Default,
{
    let src_view = TypedImageRef::<P>::from_buffer(sw as u32, sh as u32, bytemuck::cast_slice(src))
        .expect("source buffer matches its size");
    let mut out = vec![T::default(); dh * dw];
    {
        let mut dst = TypedImage::<P>::from_buffer(dw as u32, dh as u32, bytemuck::cast_slice_mut(&mut out))
            .expect("destination buffer matches its size");
        Resizer::new()
            .resize_typed(&src_view, &mut dst, &ResizeOptions::new().resize_alg(alg))
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
        let out = resize_image(GrayImage::new(4, 4, px.to_vec()), 2, 2);
        for (got, want) in out.pixels.iter().zip([0.24489796, 0.75510204, 0.75510204, 0.24489796]) {
            assert!((got - want).abs() < 1e-5, "{:?}", out.pixels);
        }
        // A fine 1-pixel checkerboard shrunk by 4 must average to gray (antialiasing),
        // not alias to black or white.
        let fine: Vec<f32> = (0..64 * 64).map(|i| ((i / 64 + i % 64) % 2) as f32).collect();
        let out = resize_image(GrayImage::new(64, 64, fine), 16, 16);
        assert!(out.pixels.iter().all(|&v| (v - 0.5).abs() < 0.05), "{:?}", &out.pixels[..8]);
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
