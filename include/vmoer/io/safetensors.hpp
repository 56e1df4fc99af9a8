// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header mapping tensor names to dtype, shape
// and [begin, end) byte offsets into the data section that follows, and an optional
// "__metadata__" object of strings.
//
// The reader maps the file and validates the whole header before handing out any
// view, so that a view's bytes are always inside the file and exactly fit its shape.
// It is as strict as the reference implementation except that it tolerates gaps
// between tensors (they cannot make a view read outside its own bytes).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <Eigen/Core>

#include "vmoer/error.hpp"
#include "vmoer/io/dtype.hpp"
#include "vmoer/io/file.hpp"
#include "vmoer/io/json.hpp"
#include "vmoer/io/tensor_view.hpp"
#include "vmoer/types.hpp"

namespace vmoer::io {

/// Longest header accepted, in bytes: the reference implementation's limit.
inline constexpr std::uint64_t max_header_bytes = 100'000'000;

/// The "__metadata__" of a file: string keys to string values.
using metadata_map = std::map<std::string, std::string, std::less<>>;

/// A safetensors file, mapped or in memory, with its header validated. Move-only;
/// moving keeps every tensor_view valid, and a moved-from reader may only be
/// destroyed or assigned to. Errors are vmoer::io_error messages that name
/// the file (or "<buffer>"), the tensor and the problem, e.g.
///   vmoer: model.safetensors: tensor 'gate.weight': data_offsets [0, 100] do not
///   match shape [8, 4] of F32 (128 bytes)
class safetensors_reader {
 public:
  /// Maps and validates `file`.
  explicit safetensors_reader(const std::filesystem::path& file) : state_(std::make_unique<state>()) {
    state_->source = file.string();
    state_->storage = mapped_file(file);
    parse(std::get<mapped_file>(state_->storage).bytes());
  }

  /// Validates a file held in memory; `source` names it in messages.
  static safetensors_reader from_bytes(std::vector<std::byte> bytes, std::string source = "<buffer>") {
    auto s = std::make_unique<state>();
    s->source = std::move(source);
    s->storage = std::move(bytes);
    safetensors_reader r(std::move(s));
    r.parse(std::get<std::vector<std::byte>>(r.state_->storage));
    return r;
  }

  /// The file name given to the constructor, or the `source` given to from_bytes().
  const std::string& source() const noexcept { return state_->source; }
  /// Number of tensors.
  std::size_t size() const noexcept { return state_->entries.size(); }
  /// True when the file holds a tensor named `name`.
  bool contains(std::string_view name) const { return lookup(name) != nullptr; }
  /// The tensor named `name`, or nothing.
  std::optional<tensor_view> find(std::string_view name) const {
    const entry* e = lookup(name);
    if (e == nullptr) return std::nullopt;
    return view(*e);
  }
  /// The tensor named `name`; throws vmoer::io_error when the file has none.
  tensor_view get(std::string_view name) const {
    const entry* e = lookup(name);
    if (e == nullptr) fail("no tensor '", name, "'");
    return view(*e);
  }
  /// Every tensor name, sorted.
  std::vector<std::string_view> names() const {
    std::vector<std::string_view> out;
    out.reserve(state_->entries.size());
    for (const entry& e : state_->entries) out.push_back(e.name);
    return out;
  }
  /// The "__metadata__" map; empty when the file has none.
  const metadata_map& metadata() const noexcept { return state_->metadata; }

 private:
  struct entry {
    std::string name;
    dtype type;
    std::vector<Index> shape;
    std::size_t begin, end;  // within the data section
  };
  // On the heap, so that views (which point into it) survive moves of the reader.
  struct state {
    std::string source;
    std::variant<std::monostate, mapped_file, std::vector<std::byte>> storage;
    std::span<const std::byte> data;  // the data section
    std::vector<entry> entries;       // sorted by name
    metadata_map metadata;
  };

  explicit safetensors_reader(std::unique_ptr<state> s) : state_(std::move(s)) {}

  template <class... Args>
  [[noreturn]] void fail(Args&&... message) const {
    throw io_error(vmoer::detail::concat("vmoer: ", state_->source, ": ", std::forward<Args>(message)...));
  }

  template <class... Args>
  [[noreturn]] void fail_tensor(std::string_view name, Args&&... message) const {
    fail("tensor '", name, "': ", std::forward<Args>(message)...);
  }

  const entry* lookup(std::string_view name) const {
    const auto& es = state_->entries;
    const auto it = std::lower_bound(es.begin(), es.end(), name, [](const entry& e, std::string_view n) { return e.name < n; });
    return it != es.end() && it->name == name ? &*it : nullptr;
  }

  tensor_view view(const entry& e) const {
    return {state_->source, e.name, e.type, e.shape, state_->data.subspan(e.begin, e.end - e.begin)};
  }

  void parse(std::span<const std::byte> file) {
    if (file.size() < 8) fail("file is ", file.size(), " bytes, too short for the 8-byte header length");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | std::to_integer<std::uint64_t>(file[std::size_t(i)]);
    if (n > max_header_bytes) fail("header length ", n, " exceeds the limit of ", max_header_bytes, " bytes");
    if (n > file.size() - 8) fail("header length ", n, " exceeds the ", file.size() - 8, " bytes after the length field");
    const std::string_view text(reinterpret_cast<const char*>(file.data() + 8), std::size_t(n));
    const json::value header = json::parse(text, {.source = state_->source, .offset = 8});
    if (!header.is_object()) fail("header is ", json::describe(header.type()), ", not a JSON object");
    state_->data = file.subspan(8 + std::size_t(n));
    // Members come sorted by key, so entries come sorted by name.
    for (const json::member& m : header.as_object()) {
      if (m.key == "__metadata__") read_metadata(m.val);
      else state_->entries.push_back(read_entry(m.key, m.val));
    }
    check_overlaps();
  }

  void read_metadata(const json::value& v) {
    if (!v.is_object()) fail("__metadata__ is ", json::describe(v.type()), ", not an object of strings");
    for (const json::member& m : v.as_object()) {
      if (!m.val.is_string())
        fail("__metadata__ value of ", json::quoted(m.key), " is ", json::describe(m.val.type()), ", not a string");
      state_->metadata.emplace(m.key, m.val.as_string());
    }
  }

  // Non-negative integers of a JSON array, or a message naming the field.
  std::vector<Index> read_naturals(std::string_view tensor, std::string_view field, const json::value& v) const {
    if (!v.is_array()) fail_tensor(tensor, field, " is ", json::describe(v.type()), ", not an array");
    std::vector<Index> out;
    for (const json::value& e : v.as_array()) {
      if (!e.is_int()) fail_tensor(tensor, field, " holds ", json::describe(e.type()), ", not an integer");
      if (e.as_int() < 0) fail_tensor(tensor, field, " holds the negative number ", e.as_int());
      out.push_back(e.as_int());
    }
    return out;
  }

  entry read_entry(const std::string& name, const json::value& v) const {
    if (!v.is_object()) fail_tensor(name, "entry is ", json::describe(v.type()), ", not an object");
    for (const json::member& m : v.as_object())
      if (m.key != "dtype" && m.key != "shape" && m.key != "data_offsets")
        fail_tensor(name, "unexpected key ", json::quoted(m.key));
    const auto field = [&](std::string_view key) -> const json::value& {
      const json::value* f = v.find(key);
      if (f == nullptr) fail_tensor(name, "missing \"", key, "\"");
      return *f;
    };

    const json::value& type_name = field("dtype");
    if (!type_name.is_string()) fail_tensor(name, "dtype is ", json::describe(type_name.type()), ", not a string");
    const std::optional<dtype> type = dtype_from_string(type_name.as_string());
    if (!type) fail_tensor(name, "unknown dtype ", json::quoted(type_name.as_string()));

    std::vector<Index> shape = read_naturals(name, "shape", field("shape"));
    const std::optional<Index> numel = element_count(shape);
    if (!numel || *numel > std::numeric_limits<Index>::max() / Index(itemsize(*type)))
      fail_tensor(name, "shape ", format_shape(shape), " of ", to_string(*type), " has more bytes than a file can hold");
    const auto nbytes = static_cast<std::uint64_t>(*numel) * itemsize(*type);

    const std::vector<Index> offsets = read_naturals(name, "data_offsets", field("data_offsets"));
    if (offsets.size() != 2) fail_tensor(name, "data_offsets ", format_shape(offsets), " are not [begin, end]");
    const auto begin = static_cast<std::uint64_t>(offsets[0]), end = static_cast<std::uint64_t>(offsets[1]);
    if (begin > end) fail_tensor(name, "data_offsets ", format_shape(offsets), ": begin is after end");
    if (end - begin != nbytes)
      fail_tensor(name, "data_offsets ", format_shape(offsets), " do not match shape ", format_shape(shape), " of ",
                  to_string(*type), " (", nbytes, " bytes)");
    if (end > state_->data.size())
      fail_tensor(name, "data_offsets ", format_shape(offsets), " exceed the data section (", state_->data.size(),
                  " bytes)");
    return {name, *type, std::move(shape), std::size_t(begin), std::size_t(end)};
  }

  // Two tensors sharing a byte would alias each other's data.
  void check_overlaps() const {
    std::vector<const entry*> by_offset;
    for (const entry& e : state_->entries) by_offset.push_back(&e);
    std::sort(by_offset.begin(), by_offset.end(), [](const entry* a, const entry* b) {
      return std::pair(a->begin, a->end) < std::pair(b->begin, b->end);
    });
    const entry* furthest = nullptr;  // of the tensors so far, the one that ends last
    for (const entry* e : by_offset) {
      if (furthest != nullptr && e->begin < furthest->end)
        fail("tensors '", furthest->name, "' [", furthest->begin, ", ", furthest->end, "] and '", e->name, "' [",
             e->begin, ", ", e->end, "] overlap");
      if (furthest == nullptr || e->end > furthest->end) furthest = e;
    }
  }

  std::unique_ptr<state> state_;
};

/// Builds a safetensors file from named tensors and metadata. The header lists
/// tensors in the order they were added, their data follows in the same order, and
/// the header is padded with spaces to a multiple of 8 bytes as the reference
/// implementation pads it; equal inputs give byte-identical files. Bad arguments
/// throw vmoer::invalid_argument.
class safetensors_writer {
 public:
  /// Adds a tensor of dtype `type` whose elements, in row-major order, are `data`:
  /// any contiguous range of trivially copyable elements of itemsize(type) bytes,
  /// e.g. std::uint16_t bit patterns for F16.
  template <std::ranges::contiguous_range R>
  safetensors_writer& add(std::string name, dtype type, std::vector<Index> shape, const R& data) {
    using element = std::ranges::range_value_t<R>;
    static_assert(std::is_trivially_copyable_v<element>, "tensor elements are written as their bytes");
    const char* where = "safetensors_writer::add";
    vmoer::detail::require(!name.empty() && name != "__metadata__" && json::is_valid_utf8(name), where,
                           "tensor name '", name, "' is empty, reserved or not UTF-8");
    vmoer::detail::require(!names_.contains(name), where, "duplicate tensor name '", name, "'");
    vmoer::detail::require(sizeof(element) == itemsize(type), where, "tensor '", name, "': elements of ",
                           sizeof(element), " bytes cannot be ", to_string(type));
    const std::optional<Index> numel = element_count(shape);
    vmoer::detail::require(numel && std::size_t(*numel) == std::ranges::size(data), where, "tensor '", name, "': shape ",
                           format_shape(shape), " does not hold ", std::ranges::size(data), " elements");
    const auto* first = reinterpret_cast<const std::byte*>(std::ranges::data(data));
    names_.insert(name);
    tensors_.push_back({std::move(name), type, std::move(shape), {first, first + sizeof(element) * std::ranges::size(data)}});
    return *this;
  }

  /// Adds a tensor of the dtype that stores the elements of `data` (dtype_of).
  template <std::ranges::contiguous_range R>
  safetensors_writer& add(std::string name, std::vector<Index> shape, const R& data) {
    return add(std::move(name), dtype_of<std::ranges::range_value_t<R>>, std::move(shape), data);
  }

  /// Adds an Eigen vector as a 1-D tensor, or any other matrix as a 2-D row-major one.
  template <class Derived>
  safetensors_writer& add(std::string name, const Eigen::DenseBase<Derived>& m) {
    using T = typename Derived::Scalar;
    const Matrix<T> row_major = m.derived();
    std::vector<Index> shape{row_major.rows(), row_major.cols()};
    if constexpr (Derived::IsVectorAtCompileTime) shape = {row_major.size()};
    return add(std::move(name), std::move(shape),
               std::span<const T>(row_major.data(), static_cast<std::size_t>(row_major.size())));
  }

  /// Adds `key` = `value` to "__metadata__".
  safetensors_writer& add_metadata(std::string key, std::string value) {
    const char* where = "safetensors_writer::add_metadata";
    vmoer::detail::require(json::is_valid_utf8(key) && json::is_valid_utf8(value), where, "key or value of '", key,
                           "' is not UTF-8");
    vmoer::detail::require(!metadata_.contains(key), where, "duplicate metadata key '", key, "'");
    metadata_.emplace(std::move(key), std::move(value));
    return *this;
  }

  /// The whole file, in memory.
  std::vector<std::byte> bytes() const {
    const std::vector<std::byte> head = header();
    std::vector<std::byte> out;
    for (const std::span<const std::byte> piece : pieces(head)) out.insert(out.end(), piece.begin(), piece.end());
    return out;
  }

  /// Writes the file to `file` atomically (see write_file_atomically); throws vmoer::io_error.
  void save(const std::filesystem::path& file) const {
    const std::vector<std::byte> head = header();
    write_file_atomically(file, pieces(head));
  }

 private:
  struct tensor {
    std::string name;
    dtype type;
    std::vector<Index> shape;
    std::vector<std::byte> bytes;
  };

  // {"key":value,...} from keys and JSON-encoded values.
  static std::string object(const std::vector<std::pair<std::string_view, std::string>>& members) {
    std::string out = "{";
    for (const auto& [key, value] : members) {
      if (out.size() > 1) out += ',';
      out += json::quoted(key);
      out += ':';
      out += value;
    }
    return out + '}';
  }

  template <class Integers>
  static std::string array(const Integers& values) {
    std::string out = "[";
    for (const auto v : values) {
      if (out.size() > 1) out += ',';
      out += std::to_string(v);
    }
    return out + ']';
  }

  // The 8-byte length and the JSON text, padded.
  std::vector<std::byte> header() const {
    std::vector<std::pair<std::string_view, std::string>> members;
    if (!metadata_.empty()) {
      std::vector<std::pair<std::string_view, std::string>> strings;
      for (const auto& [key, value] : metadata_) strings.emplace_back(key, json::quoted(value));
      members.emplace_back("__metadata__", object(strings));
    }
    std::size_t offset = 0;
    for (const tensor& t : tensors_) {
      const std::size_t end = offset + t.bytes.size();
      members.emplace_back(t.name, object({{"dtype", json::quoted(to_string(t.type))},
                                           {"shape", array(t.shape)},
                                           {"data_offsets", array(std::vector<std::size_t>{offset, end})}}));
      offset = end;
    }
    std::string json = object(members);
    json.append((8 - json.size() % 8) % 8, ' ');
    std::vector<std::byte> out(8);
    for (std::size_t i = 0; i < 8; ++i) out[i] = std::byte((json.size() >> (8 * i)) & 0xFF);
    for (const char c : json) out.push_back(std::byte(c));
    return out;
  }

  // Views of the file's consecutive parts: `head`, then every tensor's data.
  std::vector<std::span<const std::byte>> pieces(const std::vector<std::byte>& head) const {
    std::vector<std::span<const std::byte>> out{head};
    for (const tensor& t : tensors_) out.emplace_back(t.bytes);
    return out;
  }

  std::vector<tensor> tensors_;
  std::set<std::string, std::less<>> names_;
  metadata_map metadata_;
};

}  // namespace vmoer::io
