// Parameters as one flat, contiguous buffer with named views, so that a framework
// can own, update and save them; gradients use the same layout.
#pragma once

#include <cstddef>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "vmoer/error.hpp"
#include "vmoer/types.hpp"

namespace vmoer {

/// One named tensor inside a flat buffer.
struct TensorSlot {
  std::string name;  ///< e.g. "encoder.trunk.weight"
  Index rows = 0;    ///< first dimension (1 for vectors)
  Index cols = 0;    ///< second dimension
  Index offset = 0;  ///< first element in the buffer
  /// Number of elements.
  Index size() const { return rows * cols; }
};

/// Names, shapes and offsets of the tensors in a flat buffer.
class ParameterLayout {
 public:
  /// Appends a [rows, cols] tensor and returns its slot number.
  Index add(std::string name, Index rows, Index cols) {
    detail::require(rows >= 0 && cols >= 0, "ParameterLayout::add", "negative shape [", rows, ", ", cols, "] for '",
                    name, "'");
    detail::require(find(name) == nullptr, "ParameterLayout::add", "duplicate tensor name '", name, "'");
    slots_.push_back({std::move(name), rows, cols, size_});
    size_ += rows * cols;
    return Index(slots_.size()) - 1;
  }
  /// The slot named `name`, or null.
  const TensorSlot* find(const std::string& name) const {
    for (const auto& s : slots_)
      if (s.name == name) return &s;
    return nullptr;
  }
  /// The slot named `name`; throws if absent.
  const TensorSlot& at(const std::string& name) const {
    const TensorSlot* s = find(name);
    detail::require(s != nullptr, "ParameterLayout::at", "no tensor named '", name, "'");
    return *s;
  }
  /// Slot number i.
  const TensorSlot& operator[](Index i) const { return slots_[std::size_t(i)]; }
  /// All slots, in buffer order.
  const std::vector<TensorSlot>& slots() const { return slots_; }
  /// Total number of elements.
  Index size() const { return size_; }

  /// Same names, shapes and order.
  friend bool operator==(const ParameterLayout& a, const ParameterLayout& b) {
    if (a.slots_.size() != b.slots_.size()) return false;
    for (std::size_t i = 0; i < a.slots_.size(); ++i)
      if (a.slots_[i].name != b.slots_[i].name || a.slots_[i].rows != b.slots_[i].rows ||
          a.slots_[i].cols != b.slots_[i].cols)
        return false;
    return true;
  }

 private:
  std::vector<TensorSlot> slots_;
  Index size_ = 0;
};

namespace detail {

/// Allocates on 64-byte boundaries: a cache line and an AVX-512 register. A plain
/// std::vector's large blocks sit 16 bytes past a page, so every SIMD load of a row of
/// the router weight would straddle two cache lines.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t alignment{64};
  CacheLineAllocator() = default;
  template <class U>
  constexpr CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), alignment)); }
  // Unsized: Clang declares the sized form only under -fsized-deallocation.
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, alignment); }
  template <class U>
  friend constexpr bool operator==(const CacheLineAllocator&, const CacheLineAllocator<U>&) noexcept {
    return true;
  }
};

}  // namespace detail

/// A flat buffer of T with the named views of a ParameterLayout.
template <class T>
class Parameters {
 public:
  /// A mutable view of one tensor.
  using View = Eigen::Map<Matrix<T>>;
  /// A read-only view of one tensor.
  using ConstView = Eigen::Map<const Matrix<T>>;

  Parameters() = default;
  /// Zero-initialised buffer of the given layout.
  explicit Parameters(ParameterLayout layout) : layout_(std::move(layout)), data_(std::size_t(layout_.size()), T(0)) {}

  /// Zeroes the buffer with the given layout, keeping its memory where it is large
  /// enough (a training loop's gradient buffers, reused step after step).
  void reset(const ParameterLayout& layout) {
    layout_ = layout;
    data_.assign(std::size_t(layout_.size()), T(0));
  }

  /// The layout.
  const ParameterLayout& layout() const { return layout_; }
  /// Slot i as a matrix.
  View operator[](Index i) {
    const auto& s = layout_[i];
    return View(data_.data() + s.offset, s.rows, s.cols);
  }
  /// Slot i as a read-only matrix.
  ConstView operator[](Index i) const {
    const auto& s = layout_[i];
    return ConstView(data_.data() + s.offset, s.rows, s.cols);
  }
  /// The tensor named `name`.
  View operator[](const std::string& name) {
    const auto& s = layout_.at(name);
    return View(data_.data() + s.offset, s.rows, s.cols);
  }
  /// The tensor named `name`, read-only.
  ConstView operator[](const std::string& name) const {
    const auto& s = layout_.at(name);
    return ConstView(data_.data() + s.offset, s.rows, s.cols);
  }
  /// Start of slot i.
  T* data(Index i) { return data_.data() + layout_[i].offset; }
  /// Start of slot i, read-only.
  const T* data(Index i) const { return data_.data() + layout_[i].offset; }
  /// The whole buffer.
  T* data() { return data_.data(); }
  /// The whole buffer, read-only.
  const T* data() const { return data_.data(); }
  /// Number of elements.
  Index size() const { return Index(data_.size()); }
  /// The whole buffer as a vector view.
  Eigen::Map<Vector<T>> flat() { return Eigen::Map<Vector<T>>(data_.data(), size()); }
  /// The whole buffer as a read-only vector view.
  Eigen::Map<const Vector<T>> flat() const { return Eigen::Map<const Vector<T>>(data_.data(), size()); }

 private:
  ParameterLayout layout_;
  std::vector<T, detail::CacheLineAllocator<T>> data_;
};

}  // namespace vmoer
