//! NIfTI files as radrun reads them (gzip or not, NIfTI-1 or -2), then reoriented to RAS.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radrun_data::nifti::{NiftiOptions, read_from};
use radrun_data::volume::Orientation;

fuzz_target!(|data: &[u8]| {
    let options = NiftiOptions { max_voxels: 4_000_000, channels_from_last_axis: true, nan_to_zero: true };
    let source = std::io::Cursor::new(data.to_vec());
    if let Ok(read) = read_from(std::path::Path::new("fuzz.nii"), source, &options) {
        let _ = read.volume.reoriented(Orientation::Ras);
    }
});
