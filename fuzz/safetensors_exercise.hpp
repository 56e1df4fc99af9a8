// What the safetensors fuzzer does with one input, shared with the corpus replay
// test: parse it from memory and, when it parses, read every tensor every way the
// API offers. Only vmoer::io_error may come out of the reader; anything else escapes
// this function, and the fuzzer or the test reports it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "vmoer/error.hpp"
#include "vmoer/io/safetensors.hpp"

namespace vmoer::io::fuzz {

namespace detail {

// Reads `t` in place as T when that is its dtype; io_error (misaligned) is expected.
template <class T>
double sum_in_place(const tensor_view& t) {
  if (t.type() != dtype_of<T>) return 0;
  double s = 0;
  try {
    for (const T x : t.data<T>()) s += double(x);
  } catch (const io_error&) {
  }
  return s;
}

inline double exercise_tensor(const tensor_view& t) {
  double s = double(t.name().size() + t.source().size()) + double(t.numel()) + double(t.rank());
  for (const Index d : t.shape()) s += double(d);
  for (const std::byte b : t.bytes()) s += double(std::to_integer<int>(b));
  s += sum_in_place<float>(t) + sum_in_place<double>(t) + sum_in_place<half>(t) + sum_in_place<bfloat16>(t) +
       sum_in_place<std::int32_t>(t) + sum_in_place<std::int64_t>(t) + sum_in_place<std::uint8_t>(t);
  try {
    if (is_floating(t.type())) {
      for (const float x : t.copy_to<float>()) s += double(x);
      for (const double x : t.copy_to<double>()) s += x;
      if (t.rank() == 2) s += double(t.to_matrix<float>().sum());
      if (t.rank() == 1) s += t.to_vector<double>().sum();
    } else if (is_integer(t.type())) {
      for (const std::int64_t x : t.copy_to<std::int64_t>()) s += double(x);
      if (t.rank() == 2) s += t.to_matrix<std::int32_t>().cast<double>().sum();  // may not fit: io_error
    } else {
      (void)t.copy_to<float>();  // raw-only dtypes refuse conversion: io_error
    }
  } catch (const io_error&) {
  }
  return s;
}

}  // namespace detail

/// Parses `bytes` as a safetensors file and touches every tensor; returns true when
/// the file parsed, false when the reader refused it with vmoer::io_error.
inline bool exercise_safetensors(std::span<const std::byte> bytes, double& checksum) {
  try {
    const safetensors_reader r = safetensors_reader::from_bytes({bytes.begin(), bytes.end()});
    for (const auto& [key, value] : r.metadata()) checksum += double(key.size() + value.size());
    for (const std::string_view name : r.names()) {
      checksum += detail::exercise_tensor(r.get(name));
      checksum += double(r.find(name).has_value() + r.contains(name));
    }
    return true;
  } catch (const io_error&) {
    return false;
  }
}

}  // namespace vmoer::io::fuzz
