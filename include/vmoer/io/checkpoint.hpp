// A Hugging Face checkpoint directory: one model.safetensors, or shards listed by
// model.safetensors.index.json, plus an optional config.json. The index is checked
// against the shards when the checkpoint opens, so that a missing shard or a stale
// index fails at once with the index named, rather than on the first lookup.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmoer/error.hpp"
#include "vmoer/io/file.hpp"
#include "vmoer/io/json.hpp"
#include "vmoer/io/safetensors.hpp"
#include "vmoer/io/tensor_view.hpp"

namespace vmoer::io {

/// The tensors and configuration of a checkpoint directory. Views it hands out stay
/// valid as long as the checkpoint lives. Errors are vmoer::io_error.
class checkpoint {
 public:
  /// Opens `directory`: model.safetensors when present, else the shards of
  /// model.safetensors.index.json, every one of which must exist and hold the tensors
  /// the index assigns to it; config.json is parsed when present.
  explicit checkpoint(const std::filesystem::path& directory) : directory_(directory) {
    if (!std::filesystem::is_directory(directory))
      throw io_error(vmoer::detail::concat("vmoer: ", directory.string(), ": not a directory"));
    const std::filesystem::path single = directory / "model.safetensors";
    const std::filesystem::path index = directory / "model.safetensors.index.json";
    if (std::filesystem::exists(single)) {
      shards_.emplace_back(single);
      for (const std::string_view name : shards_.front().names()) shard_of_.emplace(name, 0);
    } else if (std::filesystem::exists(index)) {
      read_index(index);
    } else {
      throw io_error(vmoer::detail::concat("vmoer: ", directory.string(),
                                           ": holds neither model.safetensors nor model.safetensors.index.json"));
    }
    const std::filesystem::path config = directory / "config.json";
    if (std::filesystem::exists(config)) config_ = json::parse(read_file(config), {.source = config.string()});
  }

  /// The directory given to the constructor.
  const std::filesystem::path& directory() const noexcept { return directory_; }
  /// True when the checkpoint has a tensor named `name`.
  bool contains(std::string_view name) const { return shard_of_.find(name) != shard_of_.end(); }
  /// The tensor named `name`, from the shard that holds it; throws when there is none.
  tensor_view get(std::string_view name) const {
    const auto it = shard_of_.find(name);
    if (it == shard_of_.end()) throw io_error(vmoer::detail::concat("vmoer: ", directory_.string(), ": no tensor '", name, "'"));
    return shards_[it->second].get(name);
  }
  /// Every tensor name, sorted.
  std::vector<std::string_view> names() const {
    std::vector<std::string_view> out;
    out.reserve(shard_of_.size());
    for (const auto& entry : shard_of_) out.push_back(entry.first);
    return out;
  }
  /// The parsed config.json, or nothing when the directory has none.
  const std::optional<json::value>& config() const noexcept { return config_; }

 private:
  // A shard must be a file of the directory itself, never a path leading out of it.
  static bool is_plain_file_name(std::string_view name) {
    return !name.empty() && name != "." && name != ".." && name.find_first_of(std::string_view("/\0", 2)) == name.npos;
  }

  void read_index(const std::filesystem::path& index) {
    const std::string source = index.string();
    const json::value root = json::parse(read_file(index), {.source = source});
    const auto fail = [&](auto&&... message) {
      throw io_error(vmoer::detail::concat("vmoer: ", source, ": ", message...));
    };
    std::map<std::string, std::size_t, std::less<>> shard_number;  // file name -> position in shards_
    for (const json::member& m : root.at("weight_map").as_object()) {
      const std::string& file = m.val.as_string();
      if (!is_plain_file_name(file))
        fail("tensor '", m.key, "' maps to '", file, "', which is not a file name in the checkpoint directory");
      const auto [it, added] = shard_number.try_emplace(file, shards_.size());
      if (added) {
        const std::filesystem::path shard = directory_ / file;
        if (!std::filesystem::exists(shard)) fail("shard '", file, "' of tensor '", m.key, "' does not exist");
        shards_.emplace_back(shard);
      }
      if (!shards_[it->second].contains(m.key)) fail("tensor '", m.key, "' is not in shard '", file, "', where the index maps it");
      shard_of_.emplace(m.key, it->second);
    }
  }

  std::filesystem::path directory_;
  std::vector<safetensors_reader> shards_;
  std::map<std::string, std::size_t, std::less<>> shard_of_;  // tensor name -> position in shards_
  std::optional<json::value> config_;
};

}  // namespace vmoer::io
