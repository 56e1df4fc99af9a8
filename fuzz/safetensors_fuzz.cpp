// libFuzzer harness: arbitrary bytes through the in-memory safetensors reader and
// every view and conversion of whatever it accepts. See fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <span>

#include "safetensors_exercise.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static volatile double sink = 0;  // keeps the reads from being optimised away
  double checksum = 0;
  vmoer::io::fuzz::exercise_safetensors(std::as_bytes(std::span(data, size)), checksum);
  sink = sink + checksum;
  return 0;
}
