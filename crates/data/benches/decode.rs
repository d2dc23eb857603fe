//! Decode + window + resize throughput of radrun's dataset loading (not a test; see
//! bench/decode.sh, which compares it with pydicom + numpy + Pillow).
//!
//!     cargo bench -p radrun-data --bench decode -- DIR SIZE REPEATS

use std::time::Instant;

// As in the radrun binary: images are large allocations, which the system allocator
// hands back to the kernel (and page-faults in again) every time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let (root, size, repeats) = (&args[1], args[2].parse::<u32>().unwrap(), args[3].parse::<usize>().unwrap());
    let settings = radrun_data::DataSettings {
        root: root.into(),
        image_size: [size, size],
        window: radrun_data::Windows::one(radrun_data::Window::File),
        ..Default::default()
    };
    let mut best = f64::INFINITY;
    let mut images = 0;
    for _ in 0..repeats {
        let start = Instant::now();
        let dataset = radrun_data::load(&settings, &Default::default()).expect("benchmark dataset loads");
        best = best.min(start.elapsed().as_secs_f64());
        images = dataset.train.len() + dataset.validation.len() + dataset.test.len();
    }
    println!(
        "{{\"tool\": \"radrun\", \"images\": {images}, \"seconds\": {best}, \"images_per_second\": {}}}",
        images as f64 / best
    );
}
