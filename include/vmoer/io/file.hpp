// POSIX file access for checkpoints: read-only memory maps, so that opening a
// multi-gigabyte shard costs nothing until a tensor is touched, and atomic writes,
// so that a crash or a full disk never leaves a half-written checkpoint behind.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include "vmoer/error.hpp"

namespace vmoer::io {

namespace detail {

/// Throws "vmoer: <path>: <what>: <strerror(errno)>"; reads errno, so call it right after the failure.
[[noreturn]] inline void throw_errno(const std::filesystem::path& path, std::string_view what) {
  const std::string reason = std::generic_category().message(errno);
  throw io_error(vmoer::detail::concat("vmoer: ", path.string(), ": ", what, ": ", reason));
}

/// Closes a descriptor on every path out of a scope.
class file_descriptor {
 public:
  /// Owns `fd`, which may be negative (an open() that failed).
  explicit file_descriptor(int fd) noexcept : fd_(fd) {}
  file_descriptor(const file_descriptor&) = delete;
  file_descriptor& operator=(const file_descriptor&) = delete;
  ~file_descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  /// The descriptor.
  int get() const noexcept { return fd_; }
  /// Closes now and reports failure, which for a written file can mean lost data.
  bool close() noexcept {
    const int fd = std::exchange(fd_, -1);
    return ::close(fd) == 0;
  }

 private:
  int fd_;
};

}  // namespace detail

/// A whole file mapped read-only into memory. Move-only; the bytes stay valid, at the
/// same address, until the last owner is destroyed. The file must not be truncated
/// while mapped (reading a vanished page raises SIGBUS, as with every mmap reader).
class mapped_file {
 public:
  /// Maps `path`; throws vmoer::io_error naming the path when it cannot be opened,
  /// is not a regular file or cannot be mapped.
  explicit mapped_file(const std::filesystem::path& path) {
    const detail::file_descriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) detail::throw_errno(path, "cannot open");
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) detail::throw_errno(path, "cannot stat");
    if (!S_ISREG(st.st_mode)) throw io_error(vmoer::detail::concat("vmoer: ", path.string(), ": not a regular file"));
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ == 0) return;  // mmap rejects empty lengths; an empty file maps to no bytes
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) detail::throw_errno(path, "cannot map");
    data_ = static_cast<const std::byte*>(p);
  }
  /// Takes over the mapping of `other`, which is left empty.
  mapped_file(mapped_file&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  /// Releases this mapping and takes over that of `other`.
  mapped_file& operator=(mapped_file&& other) noexcept {
    if (this != &other) {
      unmap();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file() { unmap(); }

  /// The file's bytes.
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }

 private:
  void unmap() noexcept {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
  }

  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

/// The whole of a (small) file as a string, e.g. a JSON file; throws vmoer::io_error.
inline std::string read_file(const std::filesystem::path& path) {
  const mapped_file file(path);
  const std::span<const std::byte> b = file.bytes();
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

/// Writes the concatenation of `pieces` to `path` atomically: to `path` + ".tmp"
/// first, flushed to disk, then renamed over `path`. On failure the temporary file
/// is removed, any previous `path` is left as it was, and vmoer::io_error is thrown.
inline void write_file_atomically(const std::filesystem::path& path, std::span<const std::span<const std::byte>> pieces) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  detail::file_descriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) detail::throw_errno(tmp, "cannot create");
  // Removes the temporary file unless the rename below succeeded.
  struct remove_on_failure {
    const std::filesystem::path& file;
    bool done = false;
    ~remove_on_failure() {
      if (!done) ::unlink(file.c_str());
    }
  } cleanup{tmp};
  for (std::span<const std::byte> piece : pieces) {
    while (!piece.empty()) {
      const ::ssize_t n = ::write(fd.get(), piece.data(), piece.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) detail::throw_errno(tmp, "cannot write");
      piece = piece.subspan(static_cast<std::size_t>(n));
    }
  }
  if (::fsync(fd.get()) != 0) detail::throw_errno(tmp, "cannot flush");
  if (!fd.close()) detail::throw_errno(tmp, "cannot close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) detail::throw_errno(path, "cannot replace it with " + tmp.string());
  cleanup.done = true;
}

}  // namespace vmoer::io
