// A non-owning view of one tensor of a checkpoint: name, dtype, shape and raw bytes,
// with conversions to C++ and Eigen types. Data inside a file is only as aligned as
// its offset, so the zero-copy accessor checks alignment and the copying ones read
// element by element with memcpy, which is valid at any address.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "vmoer/error.hpp"
#include "vmoer/io/dtype.hpp"
#include "vmoer/types.hpp"

namespace vmoer::io {

// safetensors stores little-endian data, which the views hand out as is.
static_assert(std::endian::native == std::endian::little, "vmoer::io reads little-endian data in place");

/// Number of elements of `shape` (1 for a scalar), or nothing when a dimension is
/// negative or the product overflows Index.
inline std::optional<Index> element_count(std::span<const Index> shape) noexcept {
  Index n = 1;
  for (const Index d : shape) {
    if (d < 0 || (d != 0 && n > std::numeric_limits<Index>::max() / d)) return std::nullopt;
    n *= d;
  }
  return n;
}

/// `shape` as "[8, 4]", as messages print it.
inline std::string format_shape(std::span<const Index> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// One tensor: name, dtype, shape and bytes, borrowed from the reader that made it
/// and valid as long as that reader lives. Errors are vmoer::io_error messages that
/// name the source file and the tensor.
class tensor_view {
 public:
  /// A view of `bytes`, which must hold exactly the elements of `shape` in `type`
  /// (throws vmoer::invalid_argument otherwise). `source` and `name` are for messages.
  tensor_view(std::string_view source, std::string_view name, dtype type, std::span<const Index> shape,
              std::span<const std::byte> bytes)
      : source_(source), name_(name), type_(type), shape_(shape), bytes_(bytes) {
    const std::optional<Index> n = element_count(shape);
    vmoer::detail::require(n && static_cast<std::size_t>(*n) == bytes.size() / itemsize(type) &&
                               bytes.size() % itemsize(type) == 0,
                           "tensor_view", "tensor '", name, "': ", bytes.size(), " bytes do not hold shape ",
                           format_shape(shape), " of ", to_string(type));
    numel_ = *n;
  }

  /// The file (or "<buffer>") the tensor comes from.
  std::string_view source() const noexcept { return source_; }
  /// The tensor's name in the checkpoint.
  std::string_view name() const noexcept { return name_; }
  /// The element type as stored.
  dtype type() const noexcept { return type_; }
  /// The dimensions, outermost first; empty for a scalar.
  std::span<const Index> shape() const noexcept { return shape_; }
  /// Number of dimensions.
  Index rank() const noexcept { return static_cast<Index>(shape_.size()); }
  /// Number of elements.
  Index numel() const noexcept { return numel_; }
  /// The stored little-endian bytes, with no alignment guarantee.
  std::span<const std::byte> bytes() const noexcept { return bytes_; }

  /// Throws unless the shape is `expected`; returns *this for chaining, e.g.
  /// `ck.get("gate.weight").require_shape({E, d}).to_matrix<float>()`.
  const tensor_view& require_shape(std::initializer_list<Index> expected) const {
    const std::span<const Index> e(expected.begin(), expected.size());
    if (!std::equal(shape_.begin(), shape_.end(), e.begin(), e.end()))
      fail("expected shape ", format_shape(e), ", found ", format_shape(shape_));
    return *this;
  }

  /// The elements in place, without a copy. T must be the stored type exactly
  /// (dtype_of<T> == type()) and the data aligned for T; otherwise throws
  /// vmoer::io_error, and copy_to() is the way to read it.
  template <class T>
  std::span<const T> data() const {
    if (type_ != dtype_of<T>) fail("has dtype ", to_string(type_), ", not ", to_string(dtype_of<T>));
    if (numel_ == 0) return {};
    if (reinterpret_cast<std::uintptr_t>(bytes_.data()) % alignof(T) != 0)
      fail("data is not aligned to ", alignof(T), " bytes for in-place access; copy it instead");
    // The mapped bytes are the object representation of the elements.
    return {reinterpret_cast<const T*>(bytes_.data()), static_cast<std::size_t>(numel_)};
  }

  /// Converts every element into `out`, which must hold numel() elements (throws
  /// vmoer::invalid_argument otherwise). A floating-point T accepts F16, BF16, F32 and
  /// F64, exactly where T can represent the value and rounding to nearest otherwise;
  /// an integer T accepts BOOL and the integer dtypes, throwing vmoer::io_error on an
  /// element that T cannot hold. Other dtypes throw vmoer::io_error.
  template <class T>
  void copy_to(std::span<T> out) const {
    static_assert(std::is_floating_point_v<T> || (std::is_integral_v<T> && !std::is_same_v<T, bool>),
                  "copy_to converts to arithmetic types only");
    vmoer::detail::require(out.size() == static_cast<std::size_t>(numel_), "tensor_view::copy_to", "the output holds ",
                           out.size(), " elements, tensor '", name_, "' has ", numel_);
    if constexpr (std::is_floating_point_v<T>) {
      switch (type_) {
        case dtype::f16: return convert<std::uint16_t>(out, [](std::uint16_t h) { return T(f16_to_float(h)); });
        case dtype::bf16: return convert<std::uint16_t>(out, [](std::uint16_t h) { return T(bf16_to_float(h)); });
        case dtype::f32: return convert<float>(out, [](float x) { return T(x); });
        case dtype::f64: return convert<double>(out, [](double x) { return T(x); });
        default: fail("dtype ", to_string(type_), " does not convert to a floating-point type");
      }
    } else {
      switch (type_) {
        case dtype::boolean:
        case dtype::u8: return convert_integers<std::uint8_t>(out);
        case dtype::i8: return convert_integers<std::int8_t>(out);
        case dtype::i16: return convert_integers<std::int16_t>(out);
        case dtype::u16: return convert_integers<std::uint16_t>(out);
        case dtype::i32: return convert_integers<std::int32_t>(out);
        case dtype::u32: return convert_integers<std::uint32_t>(out);
        case dtype::i64: return convert_integers<std::int64_t>(out);
        case dtype::u64: return convert_integers<std::uint64_t>(out);
        default: fail("dtype ", to_string(type_), " does not convert to an integer type");
      }
    }
  }

  /// The elements converted to T, as copy_to(std::span<T>) converts them.
  template <class T>
  std::vector<T> copy_to() const {
    std::vector<T> out(static_cast<std::size_t>(numel_));
    copy_to(std::span<T>(out));
    return out;
  }

  /// A 1-D tensor as a vector, converted as copy_to() does; throws for other ranks.
  template <class T>
  Vector<T> to_vector() const {
    if (rank() != 1) fail("expected a 1-D tensor, found shape ", format_shape(shape_));
    Vector<T> v(shape_[0]);
    copy_to(std::span<T>(v.data(), static_cast<std::size_t>(v.size())));
    return v;
  }

  /// A 2-D tensor as a row-major matrix, converted as copy_to() does; throws for other ranks.
  template <class T>
  Matrix<T> to_matrix() const {
    if (rank() != 2) fail("expected a 2-D tensor, found shape ", format_shape(shape_));
    Matrix<T> m(shape_[0], shape_[1]);
    copy_to(std::span<T>(m.data(), static_cast<std::size_t>(m.size())));
    return m;
  }

 private:
  template <class... Args>
  [[noreturn]] void fail(Args&&... message) const {
    throw io_error(
        vmoer::detail::concat("vmoer: ", source_, ": tensor '", name_, "': ", std::forward<Args>(message)...));
  }

  // out[i] = decode(stored element i), reading each element with memcpy because
  // the bytes may sit at any address.
  template <class Stored, class T, class Decode>
  void convert(std::span<T> out, Decode decode) const {
    for (std::size_t i = 0; i < out.size(); ++i) {
      Stored s;
      std::memcpy(&s, bytes_.data() + i * sizeof(Stored), sizeof(Stored));
      out[i] = decode(s);
    }
  }

  template <class Stored, class T>
  void convert_integers(std::span<T> out) const {
    convert<Stored>(out, [this](Stored s) {
      if (!std::in_range<T>(s))
        fail("value ", +s, " does not fit ", std::is_signed_v<T> ? "a signed " : "an unsigned ", 8 * sizeof(T),
             "-bit integer");
      return static_cast<T>(s);
    });
  }

  std::string_view source_;
  std::string_view name_;
  dtype type_;
  std::span<const Index> shape_;
  std::span<const std::byte> bytes_;
  Index numel_ = 0;
};

}  // namespace vmoer::io
