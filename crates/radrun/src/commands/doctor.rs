//! `radrun doctor`: which radrun, which libtorch (and where), whether CUDA and cuDNN work,
//! the GPUs, and the CPU threads used.

use radrun_runner::error::RadrunError;
use std::fmt::Write;

use radrun_train::device::DeviceReport;

/// Renders the report as a person reads it.
pub fn render(r: &DeviceReport) -> String {
    let mut out = String::new();
    let yes = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(out, "radrun        {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(
        out,
        "libtorch      {} at {}",
        r.libtorch_version.as_deref().unwrap_or("(version unknown)"),
        r.libtorch_path.as_ref().map_or("(not found)".into(), |p| p.display().to_string())
    );
    let _ = writeln!(out, "  linked with CUDA support (libtorch_cuda.so loaded): {}", yes(r.libtorch_cuda_loaded));
    let _ = writeln!(
        out,
        "CPU           {} threads, tensor check {}",
        r.cpu_threads,
        if r.cpu_works { "ok" } else { "FAILED" }
    );
    let _ = writeln!(
        out,
        "CUDA          {} ({} device(s))",
        if r.cuda_available { "available" } else { "not available" },
        r.cuda_devices
    );
    if let Some(works) = r.cuda_works {
        let _ = writeln!(out, "  tensor check on cuda:0 {}", if works { "ok" } else { "FAILED" });
    }
    let _ = writeln!(
        out,
        "cuDNN         {}",
        if r.cudnn_available {
            format!("available (version {})", r.cudnn_version.unwrap_or(0))
        } else {
            "not available".into()
        }
    );
    for (i, gpu) in r.gpus.iter().enumerate() {
        let _ =
            writeln!(out, "GPU {i}         {} ({:.1} GiB)", gpu.name, gpu.memory_bytes as f64 / (1u64 << 30) as f64);
    }
    if r.gpus.is_empty() {
        let _ = writeln!(out, "GPUs          none found by the CUDA driver (libcuda.so.1)");
    }
    let device = if r.cuda_available { "cuda:0" } else { "cpu" };
    let _ = writeln!(out, "train.device = \"auto\" will use: {device}");
    out
}

/// Prints the report; fails when libtorch cannot compute, or when a GPU is present but
/// CUDA does not work through libtorch.
pub fn run(json: bool) -> Result<(), RadrunError> {
    let report = radrun_train::device::report();
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("plain data serializes"));
    } else {
        print!("{}", render(&report));
    }
    if report.libtorch_path.is_none() || !report.cpu_works {
        return Err(RadrunError::Installation(format!(
            "libtorch could not be loaded or could not compute on the CPU; rerun scripts/setup.sh \
             (it installs torch==2.11.0 into {}), then rebuild radrun",
            radrun_runner::store::cache_dir().display()
        )));
    }
    if !report.gpus.is_empty() && !report.cuda_available {
        return Err(RadrunError::Installation(format!(
            "a GPU is present but libtorch does not see CUDA{}; check the NVIDIA driver (nvidia-smi) \
             and that the torch wheel is a CUDA build",
            if report.libtorch_cuda_loaded {
                ""
            } else {
                " (libtorch_cuda.so was not loaded: rebuild with scripts/setup.sh)"
            }
        )));
    }
    if report.cuda_works == Some(false) {
        return Err(RadrunError::Installation(
            "CUDA is reported available but a tensor computation on cuda:0 failed; check the NVIDIA driver \
             (nvidia-smi) and that no other process holds the GPU's memory"
                .into(),
        ));
    }
    Ok(())
}
