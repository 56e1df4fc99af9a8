// The result of routing a batch.
#pragma once

#include "vmoer/signals.hpp"
#include "vmoer/types.hpp"

namespace vmoer {

/// Which optional outputs route() fills.
struct RouteOptions {
  std::uint32_t token_offset = 0;  ///< global index of the first token (its RNG coordinate)
  bool keep_logits = false;        ///< fill Routing::logits with the mean logits [T, E]
  bool keep_probs = false;         ///< fill Routing::probs with the averaged scores [T, E]
  bool keep_projection = false;    ///< fill Routing::projection, which backward() then reads
};

/// Experts, weights and uncertainty of T tokens.
template <class T>
struct Routing {
  IdMatrix ids;        ///< [T, K] chosen experts, by descending selection key
  Matrix<T> weights;   ///< [T, K] combine weights aligned with ids
  Signals<T> signals;  ///< per-token uncertainty
  Matrix<T> logits;    ///< [T, E] posterior mean logits, when RouteOptions::keep_logits
  Matrix<T> probs;     ///< [T, E] averaged scores before selection, when RouteOptions::keep_probs
  /// [T, Router::projection_width()] the products of the hidden states, when
  /// RouteOptions::keep_projection: W u + b [E], the encoder trunk's pre-activations [H]
  /// (none without an encoder) and the learned temperature's [Ht] (none without one).
  /// backward() reads them instead of recomputing the D-wide products, its costliest part
  /// after the gradients.
  Matrix<T> projection;
};

}  // namespace vmoer
