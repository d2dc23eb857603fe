//! The compute device: resolving `train.device`, and what `radrun doctor` reports about
//! libtorch, CUDA, cuDNN and the GPUs.

use std::path::PathBuf;

use serde::Serialize;
use tch::{Cuda, Device};

use crate::Error;
use radrun_settings::DeviceChoice;

/// The device a run uses.
pub fn resolve(choice: DeviceChoice) -> Result<Device, Error> {
    match choice {
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(n) => {
            let count = Cuda::device_count().max(0) as usize;
            if n < count {
                Ok(Device::Cuda(n))
            } else if count == 0 {
                Err(Error::Device(format!(
                    "`train.device` asks for cuda:{n} but libtorch sees no CUDA device ({}); run \
                     `radrun doctor`, or set train.device = \"cpu\"",
                    if libtorch_cuda_loaded() { "no GPU or no driver" } else { "libtorch_cuda.so is not loaded" }
                )))
            } else {
                Err(Error::Device(format!(
                    "`train.device` asks for cuda:{n} but only {count} CUDA device(s) exist (cuda:0 to cuda:{})",
                    count - 1
                )))
            }
        }
    }
}

/// Human name of a device.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(n) => {
            let name = gpus().into_iter().nth(n).map(|g| g.name).unwrap_or_else(|| "GPU".into());
            format!("cuda:{n} ({name})")
        }
        other => format!("{other:?}"),
    }
}

/// Shared libraries of this process whose file name starts with `prefix`.
fn loaded_libraries(prefix: &str) -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut found: Vec<PathBuf> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(PathBuf::from)
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// True when `libtorch_cuda.so` is mapped into this process (the linker kept it).
pub fn libtorch_cuda_loaded() -> bool {
    !loaded_libraries("libtorch_cuda.so").is_empty()
}

/// A CUDA GPU as the driver reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpu {
    pub name: String,
    pub memory_bytes: u64,
}

/// GPUs from the CUDA driver API (libcuda), empty when there is no driver.
pub fn gpus() -> Vec<Gpu> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    type Count = unsafe extern "C" fn(*mut i32) -> i32;
    type Get = unsafe extern "C" fn(*mut i32, i32) -> i32;
    type Name = unsafe extern "C" fn(*mut std::ffi::c_char, i32, i32) -> i32;
    type Mem = unsafe extern "C" fn(*mut usize, i32) -> i32;
    // SAFETY: these are the documented C signatures of the CUDA driver API; the library
    // stays loaded for the duration of the calls.
    unsafe {
        let Ok(lib) = libloading::Library::new("libcuda.so.1") else { return Vec::new() };
        let (Ok(init), Ok(count), Ok(get), Ok(name), Ok(mem)) = (
            lib.get::<Init>(b"cuInit"),
            lib.get::<Count>(b"cuDeviceGetCount"),
            lib.get::<Get>(b"cuDeviceGet"),
            lib.get::<Name>(b"cuDeviceGetName"),
            lib.get::<Mem>(b"cuDeviceTotalMem_v2"),
        ) else {
            return Vec::new();
        };
        let mut n = 0;
        if init(0) != 0 || count(&mut n) != 0 {
            return Vec::new();
        }
        (0..n)
            .filter_map(|i| {
                let mut dev = 0;
                if get(&mut dev, i) != 0 {
                    return None;
                }
                let mut buf = [0 as std::ffi::c_char; 256];
                let mut bytes = 0usize;
                let named = name(buf.as_mut_ptr(), 256, dev) == 0;
                let sized = mem(&mut bytes, dev) == 0;
                named.then(|| Gpu {
                    name: std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned(),
                    memory_bytes: if sized { bytes as u64 } else { 0 },
                })
            })
            .collect()
    }
}

/// What `radrun doctor` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceReport {
    /// Folder of the libtorch this process loaded.
    pub libtorch_path: Option<PathBuf>,
    /// Version of that libtorch (from the wheel's `version.py` or libtorch's `build-version`).
    pub libtorch_version: Option<String>,
    pub libtorch_cuda_loaded: bool,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub gpus: Vec<Gpu>,
    pub cpu_threads: i32,
    /// Whether a small tensor computation ran on each device.
    pub cpu_works: bool,
    pub cuda_works: Option<bool>,
}

fn libtorch_version(lib_dir: &std::path::Path) -> Option<String> {
    let wheel = lib_dir.parent()?.join("version.py");
    if let Ok(text) = std::fs::read_to_string(wheel) {
        return text
            .lines()
            .find_map(|l| l.strip_prefix("__version__ = "))
            .map(|v| v.trim().trim_matches(['\'', '"']).to_string());
    }
    std::fs::read_to_string(lib_dir.parent()?.join("build-version")).ok().map(|v| v.trim().to_string())
}

fn computes_on(device: Device) -> bool {
    std::panic::catch_unwind(|| {
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]).to_device(device);
        (&t * &t).sum(tch::Kind::Float).double_value(&[]) == 14.0
    })
    .unwrap_or(false)
}

/// Folder of the libtorch this process loaded.
fn libtorch_dir() -> Option<PathBuf> {
    loaded_libraries("libtorch_cpu.so").into_iter().next().and_then(|p| p.parent().map(PathBuf::from))
}

/// Version of the libtorch this process loaded, for provenance records.
pub fn loaded_libtorch_version() -> Option<String> {
    libtorch_dir().as_deref().and_then(libtorch_version)
}

/// Probes libtorch and the devices.
pub fn report() -> DeviceReport {
    let lib_dir = libtorch_dir();
    let cuda_available = Cuda::is_available();
    DeviceReport {
        libtorch_version: lib_dir.as_deref().and_then(libtorch_version),
        libtorch_path: lib_dir,
        libtorch_cuda_loaded: libtorch_cuda_loaded(),
        cuda_available,
        cuda_devices: Cuda::device_count(),
        cudnn_available: Cuda::cudnn_is_available(),
        cudnn_version: Cuda::cudnn_is_available().then(tch::utils::version_cudnn),
        gpus: gpus(),
        cpu_threads: tch::get_num_threads(),
        cpu_works: computes_on(Device::Cpu),
        cuda_works: cuda_available.then(|| computes_on(Device::Cuda(0))),
    }
}
