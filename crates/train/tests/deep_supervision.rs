//! Deep supervision's labels at a lower resolution: nnU-Net takes them by nearest voxel
//! (PyTorch's `nearest-exact`), voxel i of a side downsampled by f being voxel
//! i x f + f / 2 of the full labels, checked here against that rule by hand.

use radrun_train::fit::at_resolution;
use tch::{Device, Kind, Tensor};

#[test]
fn labels_at_a_lower_resolution_are_the_nearest_voxels() {
    // labels numbered by position: voxel (z, y, x) holds z * 36 + y * 6 + x
    let full = Tensor::arange(4 * 6 * 6, (Kind::Int64, Device::Cpu)).view([1, 4, 6, 6]);
    let value = |z: i64, y: i64, x: i64| z * 36 + y * 6 + x;
    // halved along every axis
    let output = Tensor::zeros([1, 3, 2, 3, 3], (Kind::Float, Device::Cpu));
    let low = at_resolution(&full, &output);
    assert_eq!(low.size(), [1, 2, 3, 3]);
    for (z, y, x) in [(0, 0, 0), (1, 2, 1), (1, 0, 2)] {
        assert_eq!(low.int64_value(&[0, z, y, x]), value(2 * z + 1, 2 * y + 1, 2 * x + 1), "({z}, {y}, {x})");
    }
    // z kept (an anisotropic level pools in plane only), y and x by 3
    let output = Tensor::zeros([1, 3, 4, 2, 2], (Kind::Float, Device::Cpu));
    let low = at_resolution(&full, &output);
    assert_eq!(low.size(), [1, 4, 2, 2]);
    for (z, y, x) in [(0, 0, 0), (3, 1, 0), (2, 1, 1)] {
        assert_eq!(low.int64_value(&[0, z, y, x]), value(z, 3 * y + 1, 3 * x + 1), "({z}, {y}, {x})");
    }
}
