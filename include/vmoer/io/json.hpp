// A small, strict JSON parser (RFC 8259) for checkpoint headers, shard indexes and
// Hugging Face config.json files. Strict because these files come from outside: no
// comments, trailing commas, leading zeros, lone surrogates, ill-formed UTF-8 or
// duplicate keys, and bounded nesting so that hostile input cannot exhaust the stack.
// Every value knows its parent and source, so a type mismatch found long after
// parsing still says where it is, e.g.
//   vmoer: config.json: /num_experts_per_tok: expected an integer, found a string
// The path is worked out only for such a message, so that a value costs 64 bytes
// (libstdc++); parse_options::max_values bounds the memory a hostile text can claim.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "vmoer/error.hpp"

namespace vmoer::io::json {

/// The kind of a JSON value. Integral numbers that fit int64 are `integer`; other
/// numbers are `number` (double).
enum class kind : std::uint8_t {
  null,     ///< null
  boolean,  ///< true or false
  integer,  ///< an integral number within int64
  number,   ///< any other number, as double
  string,   ///< a UTF-8 string
  array,    ///< an ordered list of values
  object,   ///< string keys to values, keys unique
};

/// The kind with its article, for messages: "an integer", "a string"...
inline std::string_view describe(kind k) noexcept {
  switch (k) {
    case kind::null: return "null";
    case kind::boolean: return "a boolean";
    case kind::integer: return "an integer";
    case kind::number: return "a floating-point number";
    case kind::string: return "a string";
    case kind::array: return "an array";
    case kind::object: return "an object";
  }
  return "an unknown value";
}

/// Limits and naming for parse().
struct parse_options {
  std::string_view source = "<buffer>";  ///< names the text in messages, usually a file name
  std::size_t offset = 0;                ///< added to byte offsets in messages: where the text starts in its file
  std::size_t max_depth = 128;           ///< deepest nesting of arrays and objects
  std::size_t max_bytes = 100'000'000;   ///< longest text accepted
  std::size_t max_values = 10'000'000;   ///< most values (scalars and containers) accepted, about 1 GB at most
};

struct member;
namespace detail {
class parser;
}

/// A parsed JSON value. Accessors throw vmoer::io_error naming the source and the
/// value's JSON Pointer when the value has another kind.
class value {
 public:
  /// Elements of an array.
  using array_type = std::vector<value>;
  /// Members of an object, sorted by key.
  using object_type = std::vector<member>;

  /// A null value, not attached to any source.
  value() = default;
  /// A deep copy, which is a top level of its own: its path() is empty.
  value(const value& other);
  /// Takes over the contents and the place of `other`.
  value(value&& other) noexcept;
  /// Replaces the contents with a deep copy of `other`'s; the place is kept.
  value& operator=(const value& other);
  /// Replaces the contents with `other`'s; the place is kept.
  value& operator=(value&& other) noexcept;
  ~value() = default;

  /// The kind of this value.
  kind type() const noexcept { return static_cast<kind>(data_.index()); }
  /// True for null.
  bool is_null() const noexcept { return type() == kind::null; }
  /// True for true and false.
  bool is_bool() const noexcept { return type() == kind::boolean; }
  /// True for an integral number within int64.
  bool is_int() const noexcept { return type() == kind::integer; }
  /// True for any number, integral or not.
  bool is_number() const noexcept { return is_int() || type() == kind::number; }
  /// True for a string.
  bool is_string() const noexcept { return type() == kind::string; }
  /// True for an array.
  bool is_array() const noexcept { return type() == kind::array; }
  /// True for an object.
  bool is_object() const noexcept { return type() == kind::object; }

  /// The boolean; throws io_error for any other kind.
  bool as_bool() const { return get<bool>(kind::boolean); }
  /// The integer; throws io_error for any other kind, non-integral numbers included.
  std::int64_t as_int() const { return get<std::int64_t>(kind::integer); }
  /// Any number as double (integers may round); throws io_error for other kinds.
  double as_double() const {
    if (is_int()) return static_cast<double>(std::get<std::int64_t>(data_));
    return get<double>(kind::number);
  }
  /// The string; throws io_error for any other kind.
  const std::string& as_string() const { return get<std::string>(kind::string); }
  /// The elements; throws io_error for any other kind.
  const array_type& as_array() const { return get<array_type>(kind::array); }
  /// The members, sorted by key; throws io_error for any other kind.
  const object_type& as_object() const { return get<object_type>(kind::object); }

  /// Number of elements or members; throws io_error for scalars.
  std::size_t size() const;
  /// The member `key`, or null when absent; throws io_error if this is not an object.
  const value* find(std::string_view key) const;
  /// The member `key`; throws io_error naming the key when absent or if this is not an object.
  const value& at(std::string_view key) const;
  /// Element `index`; throws io_error when out of range or if this is not an array.
  const value& at(std::size_t index) const {
    const array_type& a = as_array();
    if (index >= a.size()) fail("index ", index, " out of range for an array of ", a.size());
    return a[index];
  }

  /// Where the value is, as a JSON Pointer (RFC 6901); empty for the top level.
  std::string path() const;
  /// The source given to parse(), or empty for a default-constructed value.
  std::string_view source() const noexcept { return source_ ? std::string_view(*source_) : std::string_view(); }

 private:
  friend class detail::parser;

  template <class T>
  const T& get(kind expected) const {
    if (type() != expected) fail("expected ", describe(expected), ", found ", describe(type()));
    return std::get<T>(data_);
  }

  template <class... Args>
  [[noreturn]] void fail(Args&&... message) const {
    const std::string where = path();
    throw io_error(vmoer::detail::concat("vmoer: ", source(), ": ", where.empty() ? "top level" : where, ": ",
                                         std::forward<Args>(message)...));
  }

  // Points the children at this value, after it was built, moved or copied.
  void adopt_children() noexcept;

  // Alternatives in the order of `kind`, so that index() is the kind.
  std::variant<std::monostate, bool, std::int64_t, double, std::string, array_type, object_type> data_;
  const value* parent_ = nullptr;  // the array or object holding this value, null at the top level
  std::shared_ptr<const std::string> source_;
};

/// One member of an object.
struct member {
  std::string key;  ///< the key, unescaped
  value val;        ///< the value
};

// Defined here, where member is complete, because they copy and move member vectors.
inline value::value(const value& other) : data_(other.data_), source_(other.source_) { adopt_children(); }

inline value::value(value&& other) noexcept
    : data_(std::move(other.data_)), parent_(other.parent_), source_(std::move(other.source_)) {
  adopt_children();
}

inline value& value::operator=(const value& other) {
  value copy(other);
  return *this = std::move(copy);
}

inline value& value::operator=(value&& other) noexcept {
  data_ = std::move(other.data_);
  source_ = std::move(other.source_);
  adopt_children();
  return *this;
}

inline void value::adopt_children() noexcept {
  if (auto* elements = std::get_if<array_type>(&data_))
    for (value& e : *elements) e.parent_ = this;
  if (auto* members = std::get_if<object_type>(&data_))
    for (member& m : *members) m.val.parent_ = this;
}

inline std::string value::path() const {
  if (parent_ == nullptr) return {};
  std::string p = parent_->path() + '/';
  if (parent_->is_array()) return p + std::to_string(this - parent_->as_array().data());
  for (const member& m : parent_->as_object()) {
    if (&m.val != this) continue;
    for (const char c : m.key) {  // RFC 6901 escapes
      if (c == '~') p += "~0";
      else if (c == '/') p += "~1";
      else p += c;
    }
  }
  return p;
}

inline std::size_t value::size() const {
  if (is_array()) return as_array().size();
  if (is_object()) return as_object().size();
  fail("expected an array or an object, found ", describe(type()));
}

inline const value* value::find(std::string_view key) const {
  const object_type& members = as_object();
  const auto it = std::lower_bound(members.begin(), members.end(), key,
                                   [](const member& m, std::string_view k) { return m.key < k; });
  return it != members.end() && it->key == key ? &it->val : nullptr;
}

inline const value& value::at(std::string_view key) const {
  const value* v = find(key);
  if (v == nullptr) fail("missing key \"", key, "\"");
  return *v;
}

namespace detail {

/// Length of the well-formed UTF-8 sequence that starts s[i] (Unicode table 3-7:
/// no overlong forms, surrogates or code points above U+10FFFF), or 0 if ill-formed.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() - i < n || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  return n;
}

}  // namespace detail

/// True when `s` is well-formed UTF-8.
inline bool is_valid_utf8(std::string_view s) noexcept {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = detail::utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

/// `s` as a JSON string literal, quotes included. Throws vmoer::invalid_argument
/// when `s` is not well-formed UTF-8, which no JSON reader would accept.
inline std::string quoted(std::string_view s) {
  vmoer::detail::require(is_valid_utf8(s), "json::quoted", "string is not well-formed UTF-8");
  std::string out = "\"";
  for (const char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (const auto c = static_cast<unsigned char>(ch); c < 0x20) {
          constexpr char hex[] = "0123456789abcdef";
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

namespace detail {

/// The recursive-descent parser behind parse(); use parse().
class parser {
 public:
  /// Prepares to parse `text`; nothing is read yet.
  parser(std::string_view text, const parse_options& options)
      : text_(text), options_(options), source_(std::make_shared<const std::string>(options.source)) {}

  /// The single value that `text` holds, surrounded by optional whitespace.
  value document() {
    if (text_.size() > options_.max_bytes)
      fail(0, "text of ", text_.size(), " bytes exceeds the limit of ", options_.max_bytes);
    skip_whitespace();
    value v = parse_value(0);
    skip_whitespace();
    if (pos_ != text_.size()) fail(pos_, "unexpected ", quote_char(pos_), " after the value");
    return v;
  }

 private:
  template <class... Args>
  [[noreturn]] void fail(std::size_t at, Args&&... message) const {
    throw io_error(vmoer::detail::concat("vmoer: ", options_.source, ": invalid JSON at byte ", options_.offset + at,
                                         ": ", std::forward<Args>(message)...));
  }

  // The byte at `at` for messages: 'x' when printable, else its hex code.
  std::string quote_char(std::size_t at) const {
    if (at >= text_.size()) return "end of text";
    const auto c = static_cast<unsigned char>(text_[at]);
    if (c >= 0x20 && c < 0x7F) return std::string("'") + char(c) + "'";
    constexpr char hex[] = "0123456789ABCDEF";
    return std::string("byte 0x") + hex[c >> 4] + hex[c & 15];
  }

  bool at_end() const noexcept { return pos_ >= text_.size(); }
  // NUL at the end, which matches no character the grammar looks for.
  char peek() const noexcept { return at_end() ? '\0' : text_[pos_]; }
  bool peek_digit() const noexcept { return peek() >= '0' && peek() <= '9'; }

  void skip_whitespace() noexcept {
    while ((peek() == ' ' || peek() == '\t' || peek() == '\n' || peek() == '\r')) ++pos_;
  }

  // `c` is never NUL, so peek()'s NUL at the end never matches it.
  void expect(char c, std::string_view what) {
    if (peek() != c) fail(pos_, "expected ", what, ", found ", quote_char(pos_));
    ++pos_;
  }

  value parse_value(std::size_t depth) {
    if (++values_ > options_.max_values) fail(pos_, "more than ", options_.max_values, " values");
    value v;
    v.source_ = source_;
    if (at_end()) fail(pos_, "unexpected end of text, expected a value");
    switch (peek()) {
      case '{':
        v.data_ = parse_object(depth + 1);
        v.adopt_children();
        break;
      case '[':
        v.data_ = parse_array(depth + 1);
        v.adopt_children();
        break;
      case '"': v.data_ = parse_string(); break;
      case 't':
        parse_literal("true");
        v.data_ = true;
        break;
      case 'f':
        parse_literal("false");
        v.data_ = false;
        break;
      case 'n': parse_literal("null"); break;
      default:
        if (peek() != '-' && !peek_digit()) fail(pos_, "unexpected ", quote_char(pos_));
        parse_number(v);
    }
    return v;
  }

  void check_depth(std::size_t depth) const {
    if (depth > options_.max_depth) fail(pos_, "nesting deeper than ", options_.max_depth, " levels");
  }

  value::object_type parse_object(std::size_t depth) {
    check_depth(depth);
    ++pos_;  // '{'
    struct keyed {
      member m;
      std::size_t offset;
    };
    std::vector<keyed> members;
    skip_whitespace();
    if (peek() == '}') {
      ++pos_;
      return {};
    }
    for (;;) {
      const std::size_t key_offset = pos_;
      if (peek() != '"') fail(pos_, "expected a string key, found ", quote_char(pos_));
      std::string key = parse_string();
      skip_whitespace();
      expect(':', "':' after an object key");
      skip_whitespace();
      value v = parse_value(depth);
      members.push_back({{std::move(key), std::move(v)}, key_offset});
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        skip_whitespace();
        continue;
      }
      expect('}', "',' or '}' in an object");
      break;
    }
    // Sorted for binary-search lookup; stable, so that of two equal keys the later is reported.
    std::stable_sort(members.begin(), members.end(), [](const keyed& a, const keyed& b) { return a.m.key < b.m.key; });
    for (std::size_t i = 1; i < members.size(); ++i)
      if (members[i].m.key == members[i - 1].m.key) fail(members[i].offset, "duplicate key ", quoted(members[i].m.key));
    value::object_type out;
    out.reserve(members.size());
    for (keyed& k : members) out.push_back(std::move(k.m));
    return out;
  }

  value::array_type parse_array(std::size_t depth) {
    check_depth(depth);
    ++pos_;  // '['
    value::array_type out;
    skip_whitespace();
    if (peek() == ']') {
      ++pos_;
      return out;
    }
    for (;;) {
      out.push_back(parse_value(depth));
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        skip_whitespace();
        continue;
      }
      expect(']', "',' or ']' in an array");
      return out;
    }
  }

  void parse_literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) fail(pos_, "invalid literal, expected '", word, "'");
    pos_ += word.size();
  }

  unsigned parse_hex4() {
    if (text_.size() - pos_ < 4) fail(pos_, "truncated \\u escape");
    unsigned cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_ + std::size_t(i)];
      unsigned digit = 0;
      if (c >= '0' && c <= '9') digit = unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') digit = unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') digit = unsigned(c - 'A' + 10);
      else fail(pos_ + std::size_t(i), "invalid hex digit ", quote_char(pos_ + std::size_t(i)), " in \\u escape");
      cp = cp * 16 + digit;
    }
    pos_ += 4;
    return cp;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  // A \u escape, the backslash and 'u' already consumed; pairs surrogates.
  unsigned parse_unicode_escape(std::size_t escape_offset) {
    const unsigned cp = parse_hex4();
    if (cp >= 0xDC00 && cp <= 0xDFFF) fail(escape_offset, "unpaired low surrogate \\u escape");
    if (cp < 0xD800 || cp > 0xDBFF) return cp;
    if (text_.substr(pos_, 2) != "\\u") fail(escape_offset, "high surrogate \\u escape not followed by a low one");
    pos_ += 2;
    const unsigned low = parse_hex4();
    if (low < 0xDC00 || low > 0xDFFF) fail(escape_offset, "high surrogate \\u escape not followed by a low one");
    return 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
  }

  std::string parse_string() {
    const std::size_t start = pos_;
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (at_end()) fail(start, "unterminated string");
      const auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail(pos_, "unescaped control character ", quote_char(pos_), " in a string");
      if (c == '\\') {
        const std::size_t escape = pos_++;
        if (at_end()) fail(start, "unterminated string");
        const char e = text_[pos_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': append_utf8(out, parse_unicode_escape(escape)); break;
          default: fail(escape, "invalid escape \\", quote_char(escape + 1));
        }
        continue;
      }
      const std::size_t n = detail::utf8_sequence_length(text_, pos_);
      if (n == 0) fail(pos_, "ill-formed UTF-8 in a string");
      out.append(text_, pos_, n);
      pos_ += n;
    }
  }

  void skip_digits() noexcept {
    while (peek_digit()) ++pos_;
  }

  void require_digit(std::string_view where) const {
    if (!peek_digit()) fail(pos_, "expected a digit ", where, ", found ", quote_char(pos_));
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? : int64 when integral and in range, else double.
  void parse_number(value& v) {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    require_digit("in a number");
    if (peek() == '0') {
      ++pos_;
      if (peek_digit()) fail(start, "leading zero in a number");
    } else {
      skip_digits();
    }
    bool integral = true;
    if (peek() == '.') {
      ++pos_;
      require_digit("after the decimal point");
      skip_digits();
      integral = false;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      require_digit("in the exponent");
      skip_digits();
      integral = false;
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integral) {
      std::int64_t i = 0;
      if (std::from_chars(first, last, i).ec == std::errc()) {
        v.data_ = i;
        return;
      }
    }
    double d = 0;
    if (std::from_chars(first, last, d).ec != std::errc()) fail(start, "number out of the range of double");
    v.data_ = d;
  }

  std::string_view text_;
  parse_options options_;
  std::shared_ptr<const std::string> source_;
  std::size_t pos_ = 0;
  std::size_t values_ = 0;  // parsed so far
};

}  // namespace detail

/// Parses `text`, which must hold exactly one JSON value. Throws vmoer::io_error
/// "vmoer: <source>: invalid JSON at byte <offset>: <problem>" when it does not.
inline value parse(std::string_view text, const parse_options& options = {}) {
  return detail::parser(text, options).document();
}

}  // namespace vmoer::io::json
