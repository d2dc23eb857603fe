// Autocast with a chosen dtype, which tch 0.24 cannot set (its `autocast` is CUDA
// float16 only, through calls libtorch has deprecated): the state is libtorch's
// thread-local autocast state, entered and left around a forward pass and its loss.
// Built by crates/train/build.rs against the venv's libtorch headers.

#include <ATen/autocast_mode.h>

namespace {
at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// Turns autocast on for the CPU (cuda = 0) or CUDA (cuda = 1), to bfloat16 (bf16 = 1)
// or float16. Returns 0, or 1 when libtorch refused.
int radrun_autocast_enter(int cuda, int bf16) {
  try {
    at::autocast::set_autocast_dtype(device_type(cuda), bf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(device_type(cuda), true);
    at::autocast::increment_nesting();
    return 0;
  } catch (...) {
    return 1;
  }
}

// Turns autocast off again; the outermost exit frees the casts it cached.
void radrun_autocast_exit(int cuda) {
  try {
    at::autocast::set_autocast_enabled(device_type(cuda), false);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
  } catch (...) {
  }
}
}
