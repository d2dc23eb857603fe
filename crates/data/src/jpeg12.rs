//! JPEG with 9 to 12-bit samples (JPEG Extended, processes 2 and 4: CT and MR written
//! lossy by older equipment) through libjpeg-turbo 3's TurboJPEG API, built from the
//! source turbojpeg-sys bundles: jpeg-decoder has no path for them. The rest of the JPEG
//! checks (marker structure, size against the header) are the DICOM decoder's.

use std::ffi::CStr;

use turbojpeg_sys as tj;

/// A TurboJPEG decompressor, destroyed when dropped.
struct Decompressor(tj::tjhandle);

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once
        unsafe { tj::tj3Destroy(self.0) }
    }
}

impl Decompressor {
    fn new() -> Result<Self, String> {
        // SAFETY: tj3Init has no preconditions; a null handle is its failure
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        if handle.is_null() {
            return Err("libjpeg-turbo could not start a decompressor".into());
        }
        Ok(Decompressor(handle))
    }

    fn get(&self, parameter: tj::TJPARAM) -> i32 {
        // SAFETY: a live handle
        unsafe { tj::tj3Get(self.0, parameter as i32) }
    }

    /// libjpeg-turbo's own words for what went wrong.
    fn error(&self) -> String {
        // SAFETY: a live handle; the string is owned by it and copied at once
        let text = unsafe { CStr::from_ptr(tj::tj3GetErrorStr(self.0)) };
        text.to_string_lossy().into_owned()
    }
}

/// Decodes a JPEG with 9 to 12-bit samples to its samples, pixel-interleaved, checking
/// its size and components against `(rows, columns, components)` before anything is
/// allocated for them. Damage libjpeg-turbo only warns of ("Corrupt JPEG data") is an
/// error, as with the other decoders; colour is returned as RGB.
pub(crate) fn decode_12_bit(data: &[u8], expected: (usize, usize, usize)) -> Result<Vec<u16>, String> {
    let decompressor = Decompressor::new()?;
    let length = data.len() as tj::size_t;
    // SAFETY: a live handle, and `data` is valid for its length during the calls
    let header = unsafe {
        tj::tj3Set(decompressor.0, tj::TJPARAM_TJPARAM_STOPONWARNING as i32, 1);
        tj::tj3DecompressHeader(decompressor.0, data.as_ptr(), length)
    };
    if header != 0 {
        return Err(format!("libjpeg-turbo cannot read the JPEG header: {}", decompressor.error()));
    }
    let height = decompressor.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT) as usize;
    let width = decompressor.get(tj::TJPARAM_TJPARAM_JPEGWIDTH) as usize;
    let gray = decompressor.get(tj::TJPARAM_TJPARAM_COLORSPACE) == tj::TJCS_TJCS_GRAY as i32;
    let components = if gray { 1 } else { 3 };
    if (height, width, components) != expected {
        return Err(format!(
            "the JPEG frame is {height} x {width} pixels with {components} component(s) but Rows x Columns x \
             SamplesPerPixel say {} x {} x {}",
            expected.0, expected.1, expected.2
        ));
    }
    let format = if gray { tj::TJPF_TJPF_GRAY } else { tj::TJPF_TJPF_RGB };
    let mut samples = vec![0i16; height * width * components];
    // SAFETY: `samples` holds height x width x components samples, what tj3Decompress12
    // writes for this header and pixel format with pitch 0 (rows packed)
    let decoded =
        unsafe { tj::tj3Decompress12(decompressor.0, data.as_ptr(), length, samples.as_mut_ptr(), 0, format) };
    if decoded != 0 {
        return Err(format!("the 12-bit JPEG frame is damaged: {}", decompressor.error()));
    }
    Ok(samples.into_iter().map(|s| s as u16).collect())
}
