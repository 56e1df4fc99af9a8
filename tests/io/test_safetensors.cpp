// safetensors reading and writing: round trips of every dtype, the writer's exact
// format, the reference files of tests/data/hf_routing, a table of malformed files
// each refused with a message that names the problem, and atomic saving.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "io_test_support.hpp"
#include "vmoer/io/safetensors.hpp"

using namespace vmoer;
using namespace vmoer::io;
using test::bytes_of;
using test::contains;
using test::file_with_header;
using test::io_error_message;

namespace {

safetensors_reader read(const safetensors_writer& w) { return safetensors_reader::from_bytes(w.bytes()); }

template <class T>
void check_round_trip(const std::vector<T>& values) {
  CAPTURE(to_string(dtype_of<T>));
  safetensors_writer w;
  w.add("t", {Index(values.size()), 1}, values);
  const safetensors_reader r = read(w);
  const tensor_view t = r.get("t");
  CHECK(t.type() == dtype_of<T>);
  CHECK(std::ranges::equal(t.shape(), std::vector<Index>{Index(values.size()), 1}));
  CHECK(t.numel() == Index(values.size()));
  const std::span<const T> in_place = t.data<T>();
  CHECK(std::equal(in_place.begin(), in_place.end(), values.begin(), values.end()));
  if constexpr (std::is_arithmetic_v<T>) CHECK(t.copy_to<T>() == values);
}

}  // namespace

TEST_CASE("every dtype round-trips through the writer and the reader") {
  check_round_trip<float>({1.5f, -0.0f, std::numeric_limits<float>::denorm_min(), 3e38f});
  check_round_trip<double>({1.0 / 3, -1e300, 5e-324});
  check_round_trip<std::int32_t>({0, -1, std::numeric_limits<std::int32_t>::min(), 123456789});
  check_round_trip<std::int64_t>({std::numeric_limits<std::int64_t>::max(), -5});
  check_round_trip<std::uint8_t>({0, 255});
  check_round_trip<std::int8_t>({-128, 127});
  check_round_trip<std::int16_t>({-32768, 7});
  check_round_trip<std::uint16_t>({65535, 0});
  check_round_trip<std::uint32_t>({4294967295u});
  check_round_trip<std::uint64_t>({18446744073709551615u});
  check_round_trip<half>({half(1.0f), half(-2.5f)});
  check_round_trip<bfloat16>({bfloat16(1.0f), bfloat16(-0.5f)});
}

TEST_CASE("F16 and BF16 tensors convert to float and double bit-exactly") {
  safetensors_writer w;
  w.add("h", dtype::f16, {6}, std::vector<std::uint16_t>{0x3C00, 0x7C00, 0x0001, 0xC000, 0x7E00, 0x8000});
  w.add("b", dtype::bf16, {6}, std::vector<std::uint16_t>{0x3F80, 0x7F80, 0x0001, 0xC000, 0x7FC0, 0x8000});
  const safetensors_reader r = read(w);
  const float inf = std::numeric_limits<float>::infinity();
  struct format {
    const char* name;
    float smallest_subnormal;
  };
  for (const format fmt : {format{"h", 0x1p-24f}, format{"b", 0x1p-133f}}) {
    CAPTURE(fmt.name);
    const float tiny = fmt.smallest_subnormal;
    const std::vector<float> f = r.get(fmt.name).copy_to<float>();
    CHECK(f[0] == 1.0f);
    CHECK(f[1] == inf);
    CHECK(f[2] == tiny);
    CHECK(f[3] == -2.0f);
    CHECK(std::isnan(f[4]));
    CHECK(std::bit_cast<std::uint32_t>(f[5]) == 0x80000000u);
    const std::vector<double> d = r.get(fmt.name).copy_to<double>();
    CHECK(d[2] == double(tiny));
    CHECK(d[1] == double(inf));
  }
  CHECK(std::bit_cast<std::uint32_t>(r.get("h").copy_to<float>()[4]) == 0x7FC00000u);
  CHECK(std::bit_cast<std::uint16_t>(r.get("h").data<half>()[0]) == 0x3C00);
  CHECK(float(r.get("b").data<bfloat16>()[0]) == 1.0f);
}

TEST_CASE("conversions check dtype and range, and name the tensor when they refuse") {
  safetensors_writer w;
  w.add("f64", {2}, std::vector<double>{0.1, 1e300});
  w.add("i64", {2}, std::vector<std::int64_t>{7, 5'000'000'000});
  w.add("neg", {1}, std::vector<std::int8_t>{-1});
  w.add("f8", dtype::f8_e4m3, {1}, std::vector<std::uint8_t>{0x38});
  const safetensors_reader r = read(w);
  const std::vector<float> f = r.get("f64").copy_to<float>();
  CHECK(f[0] == 0.1f);
  CHECK(f[1] == std::numeric_limits<float>::infinity());
  CHECK(r.get("i64").copy_to<std::int64_t>() == std::vector<std::int64_t>{7, 5'000'000'000});
  CHECK(io_error_message([&] { (void)r.get("i64").copy_to<std::int32_t>(); }) ==
        "vmoer: <buffer>: tensor 'i64': value 5000000000 does not fit a signed 32-bit integer");
  CHECK(io_error_message([&] { (void)r.get("neg").copy_to<std::uint32_t>(); }) ==
        "vmoer: <buffer>: tensor 'neg': value -1 does not fit an unsigned 32-bit integer");
  CHECK(io_error_message([&] { (void)r.get("f64").copy_to<std::int32_t>(); }) ==
        "vmoer: <buffer>: tensor 'f64': dtype F64 does not convert to an integer type");
  CHECK(io_error_message([&] { (void)r.get("i64").copy_to<double>(); }) ==
        "vmoer: <buffer>: tensor 'i64': dtype I64 does not convert to a floating-point type");
  CHECK(io_error_message([&] { (void)r.get("f8").copy_to<float>(); }) ==
        "vmoer: <buffer>: tensor 'f8': dtype F8_E4M3 does not convert to a floating-point type");
  CHECK(r.get("f8").bytes().size() == 1);
  CHECK(io_error_message([&] { (void)r.get("f64").data<float>(); }) ==
        "vmoer: <buffer>: tensor 'f64': has dtype F64, not F32");
  std::vector<float> small(1);
  CHECK_THROWS_AS(r.get("f64").copy_to(std::span<float>(small)), vmoer::invalid_argument);
}

TEST_CASE("in-place access refuses misaligned data, which copy_to still reads") {
  safetensors_writer w;
  w.add("pad", {3}, std::vector<std::uint8_t>{1, 2, 3});
  w.add("x", {2}, std::vector<float>{1.25f, -4.0f});
  const safetensors_reader r = read(w);
  CHECK(contains(io_error_message([&] { (void)r.get("x").data<float>(); }), "not aligned to 4 bytes"));
  CHECK(r.get("x").copy_to<float>() == std::vector<float>{1.25f, -4.0f});
  CHECK(r.get("pad").data<std::uint8_t>().size() == 3);
}

TEST_CASE("Eigen matrices and vectors round-trip with their shapes checked") {
  const Matrix<float> m = (Matrix<float>(2, 3) << 1, 2, 3, 4, 5, 6).finished();
  const Eigen::MatrixXd column_major = Eigen::MatrixXd::Random(3, 2);
  const Vector<float> v = Vector<float>::LinSpaced(4, 0, 3);
  const Vector<std::int32_t> ids = (Vector<std::int32_t>(2) << 7, 9).finished();
  safetensors_writer w;
  w.add("m", m).add("cm", column_major).add("v", v).add("ids", ids).add("s", {}, std::vector<float>{2.5f});
  const safetensors_reader r = read(w);
  CHECK(r.get("m").to_matrix<float>() == m);
  CHECK(r.get("m").to_matrix<double>() == m.cast<double>());
  CHECK(r.get("m").data<float>()[1] == 2.0f);  // row-major order in the file
  CHECK(r.get("cm").to_matrix<double>() == column_major);
  CHECK(r.get("cm").data<double>()[1] == column_major(0, 1));
  CHECK(r.get("v").to_vector<float>() == v);
  CHECK(r.get("ids").to_vector<std::int32_t>() == ids);
  CHECK(r.get("s").rank() == 0);
  CHECK(r.get("s").numel() == 1);
  CHECK(r.get("m").require_shape({2, 3}).to_matrix<float>() == m);
  CHECK(io_error_message([&] { (void)r.get("v").to_matrix<float>(); }) ==
        "vmoer: <buffer>: tensor 'v': expected a 2-D tensor, found shape [4]");
  CHECK(io_error_message([&] { (void)r.get("m").to_vector<float>(); }) ==
        "vmoer: <buffer>: tensor 'm': expected a 1-D tensor, found shape [2, 3]");
  CHECK(io_error_message([&] { (void)r.get("m").require_shape({3, 2}); }) ==
        "vmoer: <buffer>: tensor 'm': expected shape [3, 2], found [2, 3]");
}

TEST_CASE("the writer lays out the reference format exactly and deterministically") {
  const auto build = [] {
    safetensors_writer w;
    w.add_metadata("format", "pt").add_metadata("E", "8");
    w.add("b", {2}, std::vector<float>{1.0f, 2.0f});
    w.add("a", dtype::bf16, {1, 1}, std::vector<std::uint16_t>{0x3F80});
    w.add("empty", {0, 3}, std::vector<float>{});
    return w.bytes();
  };
  const std::vector<std::byte> file = build();
  CHECK(file == build());
  const std::string json =
      R"({"__metadata__":{"E":"8","format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"BF16","shape":[1,1],"data_offsets":[8,10]},"empty":{"dtype":"F32","shape":[0,3],"data_offsets":[10,10]}})";
  const std::size_t padded = (json.size() + 7) / 8 * 8;
  REQUIRE(file.size() == 8 + padded + 10);
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = length << 8 | std::to_integer<std::uint64_t>(file[std::size_t(i)]);
  CHECK(length == padded);
  const std::string header(reinterpret_cast<const char*>(file.data()) + 8, padded);
  CHECK(header == json + std::string(padded - json.size(), ' '));
  CHECK(file[8 + padded + 8] == std::byte{0x80});  // BF16 0x3F80, little-endian
  CHECK(file[8 + padded + 9] == std::byte{0x3F});

  const safetensors_reader r = safetensors_reader::from_bytes(file);
  CHECK(r.metadata() == metadata_map{{"E", "8"}, {"format", "pt"}});
  CHECK(r.names() == std::vector<std::string_view>{"a", "b", "empty"});
  CHECK(r.size() == 3);
  CHECK(r.get("empty").numel() == 0);
  CHECK(r.get("empty").data<float>().empty());
  CHECK(r.contains("a"));
  CHECK_FALSE(r.contains("c"));
  CHECK_FALSE(r.find("c"));
  CHECK(io_error_message([&] { (void)r.get("c"); }) == "vmoer: <buffer>: no tensor 'c'");

  safetensors_writer nothing;
  CHECK(nothing.bytes() == file_with_header("{}      "));
}

TEST_CASE("the writer refuses bad arguments") {
  safetensors_writer w;
  w.add("x", {1}, std::vector<float>{1});
  const std::vector<float> two{1, 2};
  CHECK_THROWS_AS(w.add("x", {1}, std::vector<float>{1}), vmoer::invalid_argument);
  CHECK_THROWS_AS(w.add("y", {3}, two), vmoer::invalid_argument);
  CHECK_THROWS_AS(w.add("y", {-1, -2}, two), vmoer::invalid_argument);
  CHECK_THROWS_AS(w.add("y", dtype::f64, {2}, two), vmoer::invalid_argument);
  CHECK_THROWS_AS(w.add("__metadata__", {2}, two), vmoer::invalid_argument);
  CHECK_THROWS_AS(w.add("", {2}, two), vmoer::invalid_argument);
  CHECK_THROWS_AS(w.add("\xFF", {2}, two), vmoer::invalid_argument);
  w.add_metadata("k", "v");
  CHECK_THROWS_AS(w.add_metadata("k", "w"), vmoer::invalid_argument);
  CHECK_THROWS_AS(w.add_metadata("j", "\xC0"), vmoer::invalid_argument);
  CHECK(read(w).size() == 1);  // the refused calls left the writer as it was
}

TEST_CASE("views stay valid when the reader that made them moves") {
  safetensors_writer w;
  w.add("a_tensor_name_longer_than_small_string_storage", {2}, std::vector<float>{3, 4});
  auto first = std::make_unique<safetensors_reader>(read(w));
  const tensor_view t = first->get("a_tensor_name_longer_than_small_string_storage");
  const safetensors_reader second = std::move(*first);
  first.reset();
  CHECK(t.copy_to<float>() == std::vector<float>{3, 4});
  CHECK(t.source() == "<buffer>");
  CHECK(second.get("a_tensor_name_longer_than_small_string_storage").name() == t.name());
}

TEST_CASE("the reference routing files have the shapes their metadata states") {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(VMOER_TEST_DATA "/hf_routing")) {
    if (entry.path().extension() != ".safetensors") continue;
    ++files;
    CAPTURE(entry.path().filename().string());
    const safetensors_reader r(entry.path());
    CHECK(r.source() == entry.path().string());
    const auto meta = [&](const char* key) { return Index(std::stoll(r.metadata().at(key))); };
    const Index E = meta("E"), K = meta("K"), d = meta("d"), T = meta("T");
    const Matrix<float> hidden = r.get("hidden").require_shape({T, d}).to_matrix<float>();
    const Matrix<float> weight = r.get("weight").require_shape({E, d}).to_matrix<float>();
    const Matrix<float> logits = r.get("logits").require_shape({T, E}).to_matrix<float>();
    r.get("weights").require_shape({T, K});
    const IdMatrix ids = r.get("ids").require_shape({T, K}).to_matrix<std::int32_t>();
    CHECK(r.get("ids").type() == dtype::i32);
    CHECK(ids.minCoeff() >= 0);
    CHECK(ids.maxCoeff() < E);
    Vector<double> bias = Vector<double>::Zero(E);
    if (r.contains("bias")) bias = r.get("bias").require_shape({E}).to_vector<double>();
    if (r.contains("correction_bias")) r.get("correction_bias").require_shape({E});
    // The data are where the header says: the stored logits are hidden @ weight^T + bias.
    const Matrix<double> expected = (hidden.cast<double>() * weight.cast<double>().transpose()).rowwise() + bias.transpose();
    CHECK((expected - logits.cast<double>()).cwiseAbs().maxCoeff() < 1e-4 * (1 + expected.cwiseAbs().maxCoeff()));
    // In place, when aligned, the same numbers as the copy.
    const std::span<const float> in_place = r.get("weight").data<float>();
    CHECK(std::equal(in_place.begin(), in_place.end(), weight.data()));
  }
  CHECK(files == 6);
}

TEST_CASE("malformed files are refused with a message that names the problem") {
  const std::string f32x2 = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";
  struct bad {
    const char* what;
    std::vector<std::byte> file;
    std::string message;  // a part of the message
  };
  const bad cases[] = {
      {"truncated length", bytes_of(std::string_view("\x08\0\0", 3)), "file is 3 bytes, too short for the 8-byte header length"},
      {"header length past the end", file_with_header("{}", 0, 3), "header length 3 exceeds the 2 bytes after the length field"},
      {"header length over the cap", file_with_header("{}", 0, 100'000'001),
       "header length 100000001 exceeds the limit of 100000000 bytes"},
      {"truncated header", file_with_header(R"({"t":{"dtype")"), "invalid JSON at byte 21: expected ':'"},
      {"header not JSON", file_with_header("not json"), "invalid JSON at byte 8: invalid literal, expected 'null'"},
      {"header not an object", file_with_header("[1, 2]"), "header is an array, not a JSON object"},
      {"entry not an object", file_with_header(R"({"t":[1]})"), "tensor 't': entry is an array, not an object"},
      {"missing dtype", file_with_header(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8), "tensor 't': missing \"dtype\""},
      {"missing shape", file_with_header(R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8), "tensor 't': missing \"shape\""},
      {"missing offsets", file_with_header(R"({"t":{"dtype":"F32","shape":[2]}})", 8), "tensor 't': missing \"data_offsets\""},
      {"unexpected key", file_with_header("{\"t\":{" + f32x2 + ",\"extra\":1}}", 8), "tensor 't': unexpected key \"extra\""},
      {"dtype not a string", file_with_header(R"({"t":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4),
       "tensor 't': dtype is an integer, not a string"},
      {"unknown dtype", file_with_header(R"({"t":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", 16),
       "tensor 't': unknown dtype \"F128\""},
      {"shape not an array", file_with_header(R"({"t":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8),
       "tensor 't': shape is an integer, not an array"},
      {"negative shape", file_with_header(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
       "tensor 't': shape holds the negative number -2"},
      {"fractional shape", file_with_header(R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8),
       "tensor 't': shape holds a floating-point number, not an integer"},
      {"shape beyond int64", file_with_header(R"({"t":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}})", 8),
       "tensor 't': shape holds a floating-point number, not an integer"},
      {"overflowing shape", file_with_header(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
       "tensor 't': shape [4294967296, 4294967296] of F32 has more bytes than a file can hold"},
      {"shape overflowing in bytes", file_with_header(R"({"t":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})"),
       "tensor 't': shape [2305843009213693952] of F64 has more bytes than a file can hold"},
      {"offsets not a pair", file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", 8),
       "tensor 't': data_offsets [0, 4, 8] are not [begin, end]"},
      {"negative offset", file_with_header(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[-1,-1]}})"),
       "tensor 't': data_offsets holds the negative number -1"},
      {"begin after end", file_with_header(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8),
       "tensor 't': data_offsets [8, 0]: begin is after end"},
      {"size mismatch",
       file_with_header(R"({"model.layers.0.mlp.gate.weight":{"dtype":"F32","shape":[8,4],"data_offsets":[0,100]}})", 128),
       "tensor 'model.layers.0.mlp.gate.weight': data_offsets [0, 100] do not match shape [8, 4] of F32 (128 bytes)"},
      {"offsets out of range", file_with_header("{\"t\":{" + f32x2 + "}}", 4),
       "tensor 't': data_offsets [0, 8] exceed the data section (4 bytes)"},
      {"offsets far out of range", file_with_header(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775806,9223372036854775807]}})", 8),
       "tensor 't': data_offsets [9223372036854775806, 9223372036854775807] exceed the data section (8 bytes)"},
      {"overlapping tensors",
       file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       "tensors 'a' [0, 8] and 'b' [4, 12] overlap"},
      {"empty tensor inside another",
       file_with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", 8),
       "tensors 'a' [0, 8] and 'b' [4, 4] overlap"},
      {"same tensor twice", file_with_header("{\"t\":{" + f32x2 + "},\"t\":{" + f32x2 + "}}", 8), "duplicate key \"t\""},
      {"metadata not an object", file_with_header(R"({"__metadata__":["a"]})"), "__metadata__ is an array, not an object of strings"},
      {"metadata not strings", file_with_header(R"({"__metadata__":{"a":"x","n":1}})"),
       "__metadata__ value of \"n\" is an integer, not a string"},
      {"deeply nested JSON", file_with_header(R"({"__metadata__":)" + std::string(200, '[') + std::string(200, ']') + "}"),
       "nesting deeper than 128 levels"},
      {"invalid UTF-8 in a name", file_with_header("{\"t\xC3(\":{" + f32x2 + "}}", 8), "invalid JSON at byte 11: ill-formed UTF-8"},
      {"bad escape in a name", file_with_header("{\"t\\q\":{" + f32x2 + "}}", 8), "invalid JSON at byte 11: invalid escape \\'q'"},
      {"lone surrogate in a name", file_with_header("{\"\\udc00\":{" + f32x2 + "}}", 8), "unpaired low surrogate"},
      {"garbage after the header", file_with_header("{} x", 0), "invalid JSON at byte 11: unexpected 'x' after the value"},
  };
  for (const bad& c : cases) {
    CAPTURE(c.what);
    const std::string message = io_error_message([&] { (void)safetensors_reader::from_bytes(c.file); });
    CHECK(message.starts_with("vmoer: <buffer>: "));
    CHECK(contains(message, c.message));
  }
}

TEST_CASE("a file may have gaps between tensors and padding after the header") {
  const safetensors_reader r = safetensors_reader::from_bytes(file_with_header(
      R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}   )", 10));
  CHECK(r.get("b").bytes().size() == 2);
  CHECK(r.names() == std::vector<std::string_view>{"a", "b"});
}

TEST_CASE("files are mapped from disk, and missing or unusual files are refused") {
  test::temp_directory dir;
  safetensors_writer w;
  w.add("x", {2}, std::vector<float>{1, 2}).add_metadata("k", "v");
  w.save(dir.path() / "m.safetensors");
  const safetensors_reader r(dir.path() / "m.safetensors");
  CHECK(r.get("x").data<float>()[1] == 2.0f);  // mapped data is aligned: the header pads to 8 bytes
  CHECK(r.metadata().at("k") == "v");
  CHECK(io_error_message([&] { safetensors_reader(dir.path() / "none.safetensors"); }) ==
        "vmoer: " + (dir.path() / "none.safetensors").string() + ": cannot open: No such file or directory");
  CHECK(io_error_message([&] { safetensors_reader{dir.path()}; }) == "vmoer: " + dir.path().string() + ": not a regular file");
  test::write_bytes(dir.path() / "empty.safetensors", {});
  CHECK(contains(io_error_message([&] { safetensors_reader(dir.path() / "empty.safetensors"); }), "file is 0 bytes"));
}

TEST_CASE("saving is atomic: a failed save leaves nothing, a successful one replaces the file whole") {
  test::temp_directory dir;
  safetensors_writer w;
  w.add("x", {1}, std::vector<float>{1});

  const std::filesystem::path missing = dir.path() / "no_such_dir" / "m.safetensors";
  CHECK(contains(io_error_message([&] { w.save(missing); }), "cannot create: No such file or directory"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "no_such_dir"));

  // Renaming onto a directory fails after the data were written: the temporary goes.
  const std::filesystem::path occupied = dir.path() / "occupied";
  std::filesystem::create_directory(occupied);
  CHECK(contains(io_error_message([&] { w.save(occupied); }), "cannot replace it with"));
  CHECK(std::filesystem::is_directory(occupied));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "occupied.tmp"));

  const std::filesystem::path file = dir.path() / "m.safetensors";
  test::write_bytes(file, bytes_of("old contents"));
  w.save(file);
  CHECK(safetensors_reader(file).get("x").copy_to<float>() == std::vector<float>{1});
  CHECK(std::filesystem::file_size(file) == w.bytes().size());
  CHECK_FALSE(std::filesystem::exists(dir.path() / "m.safetensors.tmp"));
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), std::filesystem::directory_iterator()) == 2);
}
