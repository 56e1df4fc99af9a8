// Errors. Host code throws vmoer::error (a std::invalid_argument for bad input,
// std::runtime_error for I/O); device code returns a status code. Public entry
// points validate once, with messages that name the argument and its value;
// hot loops then assume valid input.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace vmoer {

/// Thrown for bad arguments: wrong shapes, out-of-range sizes, non-finite input.
class invalid_argument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Thrown when a file cannot be read or is malformed.
class io_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Status codes returned by device code, where exceptions are not available.
enum class status : int {
  ok = 0,
  invalid_argument = 1,
  workspace_too_small = 2,
  cuda_error = 3,
  non_finite_input = 4,
};

/// A short, stable description of a status code.
inline const char* to_string(status s) noexcept {
  switch (s) {
    case status::ok: return "ok";
    case status::invalid_argument: return "invalid argument";
    case status::workspace_too_small: return "workspace too small";
    case status::cuda_error: return "CUDA error";
    case status::non_finite_input: return "non-finite input";
  }
  return "unknown status";
}

namespace detail {

template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

/// Throws vmoer::invalid_argument with "vmoer: <where>: <message>" when cond is false.
template <class... Args>
void require(bool cond, const char* where, Args&&... message) {
  if (!cond) throw invalid_argument(concat("vmoer: ", where, ": ", std::forward<Args>(message)...));
}

}  // namespace detail
}  // namespace vmoer
