// Replays the fuzzing corpus (tests/data/fuzz/safetensors): every input either parses
// or is refused with vmoer::io_error, never anything else, as under the fuzzer.
#include <doctest/doctest.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "safetensors_exercise.hpp"

TEST_CASE("every fuzzing corpus input parses or is refused with io_error") {
  int accepted = 0, refused = 0;
  for (const auto& entry : std::filesystem::directory_iterator(VMOER_TEST_DATA "/fuzz/safetensors")) {
    CAPTURE(entry.path().filename().string());
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<char> chars{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    double checksum = 0;
    bool parsed = false;
    CHECK_NOTHROW(parsed = vmoer::io::fuzz::exercise_safetensors(std::as_bytes(std::span(chars)), checksum));
    (parsed ? accepted : refused)++;
  }
  // The corpus holds both kinds, or it would not test much.
  CHECK(accepted > 0);
  CHECK(refused > 0);
}
