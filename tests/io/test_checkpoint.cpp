// Checkpoint directories: a single file, shards resolved through the index, the
// config, and every inconsistency between the index and the shards.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io_test_support.hpp"
#include "vmoer/io/checkpoint.hpp"

using namespace vmoer;
using namespace vmoer::io;
using test::contains;
using test::io_error_message;

namespace {

void write_text(const std::filesystem::path& path, const std::string& text) { std::ofstream(path) << text; }

const char* const shard1 = "model-00001-of-00002.safetensors";
const char* const shard2 = "model-00002-of-00002.safetensors";

// Two shards, an index and a config, as Hugging Face saves a sharded model.
void write_sharded(const std::filesystem::path& dir) {
  safetensors_writer first, second;
  first.add("model.layers.0.mlp.gate.weight", {2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  first.add("model.embed_tokens.weight", {1, 2}, std::vector<float>{7, 8});
  second.add("model.layers.1.mlp.gate.weight", dtype::bf16, {2}, std::vector<std::uint16_t>{0x3F80, 0x4000});
  first.save(dir / shard1);
  second.save(dir / shard2);
  write_text(dir / "model.safetensors.index.json", std::string(R"({"metadata": {"total_size": 36}, "weight_map": {)") +
                                                       R"("model.layers.0.mlp.gate.weight": ")" + shard1 + R"(",)" +
                                                       R"("model.embed_tokens.weight": ")" + shard1 + R"(",)" +
                                                       R"("model.layers.1.mlp.gate.weight": ")" + shard2 + R"("}})");
  write_text(dir / "config.json", R"({"model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 1})");
}

void write_index(const std::filesystem::path& dir, const std::string& weight_map) {
  write_text(dir / "model.safetensors.index.json", R"({"weight_map": )" + weight_map + "}");
}

}  // namespace

TEST_CASE("a sharded checkpoint resolves every tensor through its index") {
  test::temp_directory dir;
  write_sharded(dir.path());
  const checkpoint ck(dir.path());
  CHECK(ck.directory() == dir.path());
  CHECK(ck.names() == std::vector<std::string_view>{"model.embed_tokens.weight", "model.layers.0.mlp.gate.weight",
                                                    "model.layers.1.mlp.gate.weight"});
  CHECK(ck.contains("model.layers.1.mlp.gate.weight"));
  CHECK_FALSE(ck.contains("lm_head.weight"));
  const tensor_view gate0 = ck.get("model.layers.0.mlp.gate.weight");
  CHECK(gate0.source() == (dir.path() / shard1).string());
  CHECK(gate0.require_shape({2, 3}).to_matrix<float>()(1, 2) == 6.0f);
  const tensor_view gate1 = ck.get("model.layers.1.mlp.gate.weight");
  CHECK(gate1.source() == (dir.path() / shard2).string());
  CHECK(gate1.copy_to<float>() == std::vector<float>{1.0f, 2.0f});
  REQUIRE(ck.config());
  CHECK(ck.config()->at("num_local_experts").as_int() == 2);
  CHECK(ck.config()->at("model_type").as_string() == "mixtral");
  CHECK(io_error_message([&] { (void)ck.get("lm_head.weight"); }) ==
        "vmoer: " + dir.path().string() + ": no tensor 'lm_head.weight'");
  CHECK(io_error_message([&] { (void)ck.config()->at("hidden_size"); }) ==
        "vmoer: " + (dir.path() / "config.json").string() + ": top level: missing key \"hidden_size\"");
}

TEST_CASE("a single-file checkpoint needs no index and may have no config") {
  test::temp_directory dir;
  safetensors_writer w;
  w.add("w", {1}, std::vector<double>{0.5});
  w.save(dir.path() / "model.safetensors");
  const checkpoint ck(dir.path());
  CHECK(ck.names() == std::vector<std::string_view>{"w"});
  CHECK(ck.get("w").copy_to<double>() == std::vector<double>{0.5});
  CHECK_FALSE(ck.config());
}

TEST_CASE("inconsistent checkpoints are refused with the index or file named") {
  test::temp_directory dir;
  write_sharded(dir.path());
  const std::string index = (dir.path() / "model.safetensors.index.json").string();

  write_index(dir.path(), std::string(R"({"model.layers.0.mlp.gate.weight": ")") + shard2 + "\"}");
  CHECK(io_error_message([&] { checkpoint{dir.path()}; }) ==
        "vmoer: " + index + ": tensor 'model.layers.0.mlp.gate.weight' is not in shard '" + shard2 +
            "', where the index maps it");

  write_index(dir.path(), R"({"x": "model-00003-of-00003.safetensors"})");
  CHECK(io_error_message([&] { checkpoint{dir.path()}; }) ==
        "vmoer: " + index + ": shard 'model-00003-of-00003.safetensors' of tensor 'x' does not exist");

  write_index(dir.path(), R"({"x": "../model.safetensors"})");
  CHECK(contains(io_error_message([&] { checkpoint{dir.path()}; }), "which is not a file name in the checkpoint directory"));

  write_index(dir.path(), R"({"x": 3})");
  CHECK(io_error_message([&] { checkpoint{dir.path()}; }) == "vmoer: " + index + ": /weight_map/x: expected a string, found an integer");

  write_text(dir.path() / "model.safetensors.index.json", R"({"weights": {}})");
  CHECK(io_error_message([&] { checkpoint{dir.path()}; }) == "vmoer: " + index + ": top level: missing key \"weight_map\"");

  write_text(dir.path() / "model.safetensors.index.json", R"({"weight_map": {)");
  CHECK(contains(io_error_message([&] { checkpoint{dir.path()}; }), index + ": invalid JSON at byte 16"));

  std::filesystem::remove(dir.path() / "model.safetensors.index.json");
  CHECK(io_error_message([&] { checkpoint{dir.path()}; }) ==
        "vmoer: " + dir.path().string() + ": holds neither model.safetensors nor model.safetensors.index.json");

  test::write_bytes(dir.path() / "model.safetensors", test::file_with_header("{}"));
  write_text(dir.path() / "config.json", "{\"a\": }");
  CHECK(contains(io_error_message([&] { checkpoint{dir.path()}; }), "config.json: invalid JSON at byte 6"));

  test::write_bytes(dir.path() / "model.safetensors", test::file_with_header("[]"));
  CHECK(io_error_message([&] { checkpoint{dir.path()}; }) ==
        "vmoer: " + (dir.path() / "model.safetensors").string() + ": header is an array, not a JSON object");

  CHECK(io_error_message([&] { checkpoint{dir.path() / shard1}; }) == "vmoer: " + (dir.path() / shard1).string() + ": not a directory");
}
