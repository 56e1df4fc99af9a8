// The strict JSON parser: the grammar of RFC 8259, the accessors and their messages,
// and every rejection with its byte offset.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "io_test_support.hpp"
#include "vmoer/io/json.hpp"

using namespace vmoer::io;
using vmoer::io::test::contains;
using vmoer::io::test::io_error_message;

TEST_CASE("json parses every kind of value and looks members up by key") {
  const json::value v = json::parse(
      R"( {"s": "x", "i": -42, "big": 9223372036854775807, "d": 2.5e-3, "t": true, "f": false, "n": null,
           "a": [1, [2], {}], "o": {"k": "v"}} )");
  REQUIRE(v.is_object());
  CHECK(v.size() == 9);
  CHECK(v.at("s").as_string() == "x");
  CHECK(v.at("i").as_int() == -42);
  CHECK(v.at("big").as_int() == std::numeric_limits<std::int64_t>::max());
  CHECK(v.at("d").as_double() == 2.5e-3);
  CHECK(v.at("i").as_double() == -42.0);
  CHECK(v.at("t").as_bool());
  CHECK_FALSE(v.at("f").as_bool());
  CHECK(v.at("n").is_null());
  CHECK(v.at("a").size() == 3);
  CHECK(v.at("a").at(1).at(std::size_t(0)).as_int() == 2);
  CHECK(v.at("a").at(2).is_object());
  CHECK(v.at("o").at("k").as_string() == "v");
  CHECK(v.find("missing") == nullptr);
  CHECK(v.find("o") != nullptr);
  CHECK(v.at("a").at(1).path() == "/a/1");
  // Members are sorted by key, whatever the order in the text.
  std::string keys;
  for (const json::member& m : v.as_object()) keys += m.key;
  CHECK(keys == "abigdfinost");
}

TEST_CASE("json paths follow values through moves and copies") {
  json::value root = json::parse(R"({"a": {"b": [0, {"c~/": 1}]}})", {.source = "f.json"});
  const json::value moved = std::move(root);
  CHECK(moved.at("a").at("b").at(1).at("c~/").path() == "/a/b/1/c~0~1");
  std::vector<json::value> copies;
  for (int i = 0; i < 100; ++i) copies.push_back(moved);  // copies, then moves as the vector grows
  CHECK(copies[37].at("a").at("b").at(1).path() == "/a/b/1");
  const json::value sub = copies[5].at("a");  // a copied subtree is a top level of its own
  CHECK(sub.path().empty());
  CHECK(sub.at("b").at(0).path() == "/b/0");
  CHECK(sub.source() == "f.json");
  json::value assigned;
  CHECK(assigned.source().empty());
  assigned = copies[99];
  CHECK(assigned.at("a").at("b").at(1).at("c~/").path() == "/a/b/1/c~0~1");
  CHECK(io_error_message([&] { (void)assigned.at("a").at("b").at(0).as_string(); }) ==
        "vmoer: f.json: /a/b/0: expected a string, found an integer");
}

TEST_CASE("json keeps integers exact and turns other numbers into doubles") {
  CHECK(json::parse("0").is_int());
  CHECK(json::parse("-0").as_int() == 0);
  CHECK(json::parse("-9223372036854775808").as_int() == std::numeric_limits<std::int64_t>::min());
  const json::value too_big = json::parse("9223372036854775808");
  CHECK(too_big.type() == json::kind::number);
  CHECK(too_big.as_double() == 9223372036854775808.0);
  CHECK(json::parse("1.0").type() == json::kind::number);
  CHECK(json::parse("1E2").as_double() == 100.0);
  CHECK(json::parse("-1.5e+1").as_double() == -15.0);
  CHECK(std::signbit(json::parse("-0.0").as_double()));
}

TEST_CASE("json unescapes strings, including surrogate pairs") {
  CHECK(json::parse(R"("a\"b\\c\/d\b\f\n\r\t")").as_string() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(json::parse(R"("\u0041\u00e9\u20AC")").as_string() == "A\xC3\xA9\xE2\x82\xAC");
  CHECK(json::parse(R"("\ud83d\ude00")").as_string() == "\xF0\x9F\x98\x80");  // U+1F600
  CHECK(json::parse(R"("\u0000")").as_string() == std::string(1, '\0'));
  CHECK(json::parse("\"\xF0\x9F\x98\x80 raw\"").as_string() == "\xF0\x9F\x98\x80 raw");
}

TEST_CASE("json::quoted escapes what JSON requires and round-trips through the parser") {
  const std::string s = std::string("q\"b\\n\n\x01 \xC3\xA9") + '\0';
  CHECK(json::quoted(s) == "\"q\\\"b\\\\n\\n\\u0001 \xC3\xA9\\u0000\"");
  CHECK(json::quoted("\b\f\r\t\x1F") == R"("\b\f\r\t\u001f")");
  CHECK(json::parse(json::quoted(s)).as_string() == s);
  CHECK_THROWS_AS(json::quoted("\xFF"), vmoer::invalid_argument);
}

TEST_CASE("json accessors name the source, the key path and both kinds on a mismatch") {
  const json::value v = json::parse(R"({"cfg": {"num_experts": "8", "a/b~": [true]}})", {.source = "config.json"});
  CHECK(io_error_message([&] { (void)v.at("cfg").at("num_experts").as_int(); }) ==
        "vmoer: config.json: /cfg/num_experts: expected an integer, found a string");
  CHECK(io_error_message([&] { (void)v.at("cfg").at("top_k"); }) ==
        "vmoer: config.json: /cfg: missing key \"top_k\"");
  CHECK(io_error_message([&] { (void)v.at("cfg").at("a/b~").at(0).as_string(); }) ==
        "vmoer: config.json: /cfg/a~1b~0/0: expected a string, found a boolean");
  CHECK(io_error_message([&] { (void)v.at("cfg").at("a/b~").at(3); }) ==
        "vmoer: config.json: /cfg/a~1b~0: index 3 out of range for an array of 1");
  CHECK(io_error_message([&] { (void)v.as_array(); }) == "vmoer: config.json: top level: expected an array, found an object");
  CHECK(io_error_message([&] { (void)json::parse("1.5").as_int(); }) ==
        "vmoer: <buffer>: top level: expected an integer, found a floating-point number");
  CHECK(io_error_message([&] { (void)json::parse("3").size(); }) ==
        "vmoer: <buffer>: top level: expected an array or an object, found an integer");
  CHECK(io_error_message([&] { (void)json::parse("[]").find("k"); }) ==
        "vmoer: <buffer>: top level: expected an object, found an array");
}

TEST_CASE("json rejects malformed text with the byte offset and the problem") {
  struct bad {
    std::string text, message;  // message: the part after "invalid JSON at ", or its beginning
  };
  const bad cases[] = {
      {"", "byte 0: unexpected end of text, expected a value"},
      {"   ", "byte 3: unexpected end of text"},
      {"{", "byte 1: expected a string key, found end of text"},
      {"{\"a\" 1}", "byte 5: expected ':' after an object key, found '1'"},
      {"{\"a\":1,}", "byte 7: expected a string key, found '}'"},
      {"{\"a\":1 \"b\":2}", "byte 7: expected ',' or '}' in an object, found '\"'"},
      {"[1,]", "byte 3: unexpected ']'"},
      {"[1 2]", "byte 3: expected ',' or ']' in an array, found '2'"},
      {"{\"a\":1,\"a\":2}", "byte 7: duplicate key \"a\""},
      {"1 2", "byte 2: unexpected '2' after the value"},
      {"tru", "byte 0: invalid literal, expected 'true'"},
      {"nul", "byte 0: invalid literal, expected 'null'"},
      {"01", "byte 0: leading zero in a number"},
      {"-", "byte 1: expected a digit in a number, found end of text"},
      {"1.", "byte 2: expected a digit after the decimal point"},
      {"1e+", "byte 3: expected a digit in the exponent"},
      {".5", "byte 0: unexpected '.'"},
      {"+1", "byte 0: unexpected '+'"},
      {"1e400", "byte 0: number out of the range of double"},
      {"NaN", "byte 0: unexpected 'N'"},
      {"\"abc", "byte 0: unterminated string"},
      {"\"a\nb\"", "byte 2: unescaped control character byte 0x0A in a string"},
      {R"("\x")", "byte 1: invalid escape \\'x'"},
      {R"("\u12G4")", "byte 5: invalid hex digit 'G' in \\u escape"},
      {R"("\u12")", "byte 3: truncated \\u escape"},
      {R"("\ude00")", "byte 1: unpaired low surrogate \\u escape"},
      {R"("\ud83d")", "byte 1: high surrogate \\u escape not followed by a low one"},
      {R"("\ud83d\u0041")", "byte 1: high surrogate \\u escape not followed by a low one"},
      {"\"\xC3\"", "byte 1: ill-formed UTF-8 in a string"},            // truncated sequence
      {"\"\xC0\x80\"", "byte 1: ill-formed UTF-8 in a string"},        // overlong NUL
      {"\"\xED\xA0\x80\"", "byte 1: ill-formed UTF-8 in a string"},    // encoded surrogate
      {"\"\xF4\x90\x80\x80\"", "byte 1: ill-formed UTF-8 in a string"},  // above U+10FFFF
      {"\"\x80\"", "byte 1: ill-formed UTF-8 in a string"},            // lone continuation byte
      {"\xEF\xBB\xBF{}", "byte 0: unexpected byte 0xEF"},              // no byte-order mark
      {"[1]\x01", "byte 3: unexpected byte 0x01 after the value"},
  };
  for (const bad& c : cases) {
    CAPTURE(c.text);
    const std::string message = io_error_message([&] { (void)json::parse(c.text); });
    CHECK(message.starts_with("vmoer: <buffer>: invalid JSON at " + c.message));
  }
}

TEST_CASE("json limits nesting depth, value count and text size, and offsets messages into a file") {
  const std::string ok = std::string(128, '[') + std::string(128, ']');
  CHECK(json::parse(ok).is_array());
  const std::string deep = std::string(129, '[') + std::string(129, ']');
  CHECK(io_error_message([&] { (void)json::parse(deep); }) ==
        "vmoer: <buffer>: invalid JSON at byte 128: nesting deeper than 128 levels");
  const std::string objects = R"({"a":{"a":{"a":1}}})";
  CHECK(contains(io_error_message([&] { (void)json::parse(objects, {.max_depth = 2}); }), "nesting deeper than 2 levels"));
  CHECK(json::parse(objects, {.max_depth = 3}).at("a").at("a").at("a").as_int() == 1);
  // A million nested arrays are refused quickly, without exhausting the stack.
  CHECK(contains(io_error_message([&] { (void)json::parse(std::string(1'000'000, '[')); }), "nesting deeper"));
  CHECK(io_error_message([&] { (void)json::parse("[1, [2, 3]]", {.max_values = 4}); }) ==
        "vmoer: <buffer>: invalid JSON at byte 8: more than 4 values");
  CHECK(json::parse("[1, [2, 3]]", {.max_values = 5}).size() == 2);
  CHECK(io_error_message([&] { (void)json::parse("[1, 2]", {.max_bytes = 5}); }) ==
        "vmoer: <buffer>: invalid JSON at byte 0: text of 6 bytes exceeds the limit of 5");
  CHECK(io_error_message([&] { (void)json::parse("[1, x]", {.source = "f.safetensors", .offset = 8}); }) ==
        "vmoer: f.safetensors: invalid JSON at byte 12: unexpected 'x'");
}

TEST_CASE("is_valid_utf8 follows the Unicode well-formedness table") {
  CHECK(json::is_valid_utf8(""));
  CHECK(json::is_valid_utf8("ascii \x7F"));
  CHECK(json::is_valid_utf8("\xC2\x80\xDF\xBF\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xF0\x90\x80\x80\xF4\x8F\xBF\xBF"));
  for (const char* bad : {"\xC1\xBF", "\xE0\x9F\xBF", "\xED\xA0\x80", "\xF0\x8F\xBF\xBF", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80",
                          "\xFF", "\xE2\x82", "\xE2\x28\xA1"}) {
    CAPTURE(bad);
    CHECK_FALSE(json::is_valid_utf8(bad));
  }
}
