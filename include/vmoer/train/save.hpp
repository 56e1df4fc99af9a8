// Parameter and gradient buffers as safetensors files. A tensor is named
// "<prefix>.<slot>", the prefix saying which layer and which head, e.g.
//   layers.3.posterior.encoder.scale.weight        (layer 3, the posterior's scale head)
//   layers.3.selector.temperature.head.weight      (layer 3, VTSR's temperature head)
//   layers.3.posterior.encoder.scale.weight.grad   (its gradient, prefix "layers.3.posterior", suffix ".grad")
// Loading checks every name and shape against the buffer's layout and fills all of it
// or nothing.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "vmoer/io/safetensors.hpp"
#include "vmoer/params.hpp"

namespace vmoer::train {

/// "layers.<layer>.<head>", the prefix of one head (posterior, selector) of one layer.
inline std::string prefix(std::uint32_t layer, const std::string& head) {
  return "layers." + std::to_string(layer) + "." + head;
}

/// Adds every tensor of `buffer` to `writer` as "<prefix>.<slot name><suffix>".
template <class T>
void add(io::safetensors_writer& writer, const std::string& prefix, const Parameters<T>& buffer,
         const std::string& suffix = "") {
  for (Index s = 0; s < Index(buffer.layout().slots().size()); ++s) {
    const TensorSlot& slot = buffer.layout()[s];
    writer.add(prefix + "." + slot.name + suffix, {slot.rows, slot.cols},
               std::span<const T>(buffer.data(s), std::size_t(slot.size())));
  }
}

/// Fills `buffer` from the tensors "<prefix>.<slot name><suffix>" of `reader`, converting
/// F16/BF16/F32/F64 to T; throws vmoer::io_error naming the first missing or misshapen
/// tensor, before anything is written.
template <class T>
void read(const io::safetensors_reader& reader, const std::string& prefix, Parameters<T>& buffer,
          const std::string& suffix = "") {
  std::vector<io::tensor_view> views;
  for (const TensorSlot& slot : buffer.layout().slots())
    views.push_back(reader.get(prefix + "." + slot.name + suffix).require_shape({slot.rows, slot.cols}));
  for (Index s = 0; s < Index(views.size()); ++s)
    views[std::size_t(s)].copy_to(std::span<T>(buffer.data(s), std::size_t(buffer.layout()[s].size())));
}

/// Writes one buffer to `file` (atomically).
template <class T>
void save(const std::filesystem::path& file, const std::string& prefix, const Parameters<T>& buffer,
          const std::string& suffix = "") {
  io::safetensors_writer writer;
  add(writer, prefix, buffer, suffix);
  writer.save(file);
}

/// Reads one buffer from `file`.
template <class T>
void load(const std::filesystem::path& file, const std::string& prefix, Parameters<T>& buffer,
          const std::string& suffix = "") {
  read(io::safetensors_reader(file), prefix, buffer, suffix);
}

}  // namespace vmoer::train
