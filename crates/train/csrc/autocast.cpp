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
// or float16, after saving the state it replaces in `was_enabled` and `was_dtype`.
// Returns 0, or 1 when libtorch refused.
int radrun_autocast_enter(int cuda, int bf16, int* was_enabled, int* was_dtype) {
  try {
    at::DeviceType device = device_type(cuda);
    *was_enabled = at::autocast::is_autocast_enabled(device) ? 1 : 0;
    *was_dtype = static_cast<int>(at::autocast::get_autocast_dtype(device));
    at::autocast::set_autocast_dtype(device, bf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(device, true);
    at::autocast::increment_nesting();
    return 0;
  } catch (...) {
    return 1;
  }
}

// Restores the state `radrun_autocast_enter` saved; the outermost exit frees the casts
// autocast cached.
void radrun_autocast_exit(int cuda, int was_enabled, int was_dtype) {
  try {
    at::DeviceType device = device_type(cuda);
    at::autocast::set_autocast_enabled(device, was_enabled != 0);
    at::autocast::set_autocast_dtype(device, static_cast<at::ScalarType>(was_dtype));
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
  } catch (...) {
  }
}
}
