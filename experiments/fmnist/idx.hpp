// Reading the gzip-compressed IDX files of (Fashion-)MNIST.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <zlib.h>

#include "vmoer/error.hpp"

namespace fmnist {

/// Images as floats in [0, 1], row-major [count, rows * cols], and their labels.
struct Dataset {
  std::vector<float> pixels;          ///< [count, 784]
  std::vector<std::int64_t> labels;   ///< [count]
  std::int64_t count = 0;             ///< number of images
  static constexpr std::int64_t side = 28;          ///< image height and width
  static constexpr std::int64_t size = side * side; ///< pixels per image
};

namespace detail {

/// The whole decompressed content of a .gz file.
inline std::vector<unsigned char> gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw vmoer::io_error("fmnist: cannot open '" + path + "'");
  std::vector<unsigned char> out;
  unsigned char buffer[1 << 16];
  int n = 0;
  while ((n = gzread(f, buffer, sizeof buffer)) > 0) out.insert(out.end(), buffer, buffer + n);
  const bool failed = n < 0;
  gzclose(f);
  if (failed) throw vmoer::io_error("fmnist: '" + path + "' is not a valid gzip file");
  return out;
}

inline std::uint32_t big_endian(const std::vector<unsigned char>& b, std::size_t at) {
  return std::uint32_t(b[at]) << 24 | std::uint32_t(b[at + 1]) << 16 | std::uint32_t(b[at + 2]) << 8 | b[at + 3];
}

/// The payload of an IDX file of unsigned bytes with the given number of dimensions.
inline std::vector<unsigned char> read_idx(const std::string& path, int dims, std::vector<std::uint32_t>& shape) {
  const auto b = gunzip(path);
  if (b.size() < std::size_t(4 + 4 * dims) || big_endian(b, 0) != std::uint32_t(0x0800 + dims))
    throw vmoer::io_error("fmnist: '" + path + "' is not an IDX file of unsigned bytes with " + std::to_string(dims) +
                          " dimensions");
  std::size_t n = 1;
  shape.clear();
  for (int d = 0; d < dims; ++d) {
    shape.push_back(big_endian(b, std::size_t(4 + 4 * d)));
    n *= shape.back();
  }
  const std::size_t header = std::size_t(4 + 4 * dims);
  if (b.size() != header + n)
    throw vmoer::io_error("fmnist: '" + path + "' holds " + std::to_string(b.size() - header) +
                          " bytes of data, its header says " + std::to_string(n));
  return {b.begin() + std::ptrdiff_t(header), b.end()};
}

}  // namespace detail

/// Reads `<dir>/<split>-images-idx3-ubyte.gz` and `<dir>/<split>-labels-idx1-ubyte.gz` (split: train or t10k).
inline Dataset load(const std::string& dir, const std::string& split) {
  std::vector<std::uint32_t> image_shape, label_shape;
  const auto images = detail::read_idx(dir + "/" + split + "-images-idx3-ubyte.gz", 3, image_shape);
  const auto labels = detail::read_idx(dir + "/" + split + "-labels-idx1-ubyte.gz", 1, label_shape);
  if (image_shape[1] != Dataset::side || image_shape[2] != Dataset::side || image_shape[0] != label_shape[0])
    throw vmoer::io_error("fmnist: " + dir + "/" + split + ": expected N 28x28 images and N labels");
  Dataset d;
  d.count = image_shape[0];
  d.pixels.resize(images.size());
  for (std::size_t i = 0; i < images.size(); ++i) d.pixels[i] = float(images[i]) / 255.0f;
  d.labels.assign(labels.begin(), labels.end());
  return d;
}

}  // namespace fmnist
