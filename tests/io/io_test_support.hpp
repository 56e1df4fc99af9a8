// Helpers shared by the I/O tests: scratch directories, hand-made files and the
// message of an expected vmoer::io_error.
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "vmoer/error.hpp"

namespace vmoer::io::test {

/// A fresh, empty directory under the system temp directory, removed with its contents.
class temp_directory {
 public:
  temp_directory() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("vmoer_io_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  temp_directory(const temp_directory&) = delete;
  temp_directory& operator=(const temp_directory&) = delete;
  ~temp_directory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// The bytes of `s`.
inline std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> out;
  for (const char c : s) out.push_back(std::byte(c));
  return out;
}

/// A safetensors file by hand: `header_length` (default: the header's size) as 8
/// little-endian bytes, then `header`, then `data_bytes` zero bytes.
inline std::vector<std::byte> file_with_header(std::string_view header, std::size_t data_bytes = 0,
                                               std::uint64_t header_length = UINT64_MAX) {
  if (header_length == UINT64_MAX) header_length = header.size();
  std::vector<std::byte> out;
  for (int i = 0; i < 8; ++i) out.push_back(std::byte((header_length >> (8 * i)) & 0xFF));
  const std::vector<std::byte> h = bytes_of(header);
  out.insert(out.end(), h.begin(), h.end());
  out.resize(out.size() + data_bytes);
  return out;
}

/// Writes `bytes` to `path`.
inline void write_bytes(const std::filesystem::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

/// The message of the vmoer::io_error that `f` throws; fails the test (and returns
/// "") when it throws nothing or something else.
template <class F>
std::string io_error_message(F&& f) {
  try {
    f();
  } catch (const vmoer::io_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected vmoer::io_error, got another exception: ", e.what());
    return "";
  }
  FAIL("expected vmoer::io_error, nothing was thrown");
  return "";
}

/// True when `text` contains `part`.
inline bool contains(std::string_view text, std::string_view part) { return text.find(part) != text.npos; }

}  // namespace vmoer::io::test
