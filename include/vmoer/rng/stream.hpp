// Where every random number of the library comes from. A draw is addressed by
// logical coordinates (seed, layer, purpose, token, sample, block), never by a
// position in a running sequence, so a token's randomness does not depend on the
// batch it arrived in, the thread that handled it or the device.
//
// Mapping onto Philox4x32-10 (also cuRAND's curand_init(seed, subsequence, offset)):
//   key     = (seed low 32 bits, seed high 32 bits)
//   counter = (block, sample, token, layer << 8 | purpose)
// i.e. subsequence = (layer << 8 | purpose) << 32 | token and offset = 4 * (sample << 32 | block).
#pragma once

#include <cstdint>

#include "vmoer/rng/philox.hpp"

namespace vmoer::rng {

/// Separates independent uses of the same (seed, layer, token, sample).
enum class Purpose : std::uint32_t {
  logit_noise = 0,  ///< eps of the reparameterised logit samples
  gumbel = 1,       ///< Gumbel noise of sample-K selection
  dropout = 2,      ///< MC-dropout masks
  weights = 3,      ///< weight-space samples (SWAG)
  init = 4,         ///< parameter initialisation
  input_noise = 5,  ///< perturbations of stability analysis
};

/// Largest layer index that fits beside the purpose byte.
inline constexpr std::uint32_t max_layer = (1u << 24) - 1;

/// A seed and a layer: the stream of one router.
struct Stream {
  std::uint64_t seed = 0;   ///< the Philox key: one seed per model or run
  std::uint32_t layer = 0;  ///< the layer index, part of every counter (at most max_layer)

  /// The Philox key, the two halves of the seed.
  VMOER_HOST_DEVICE constexpr u32x2 key() const { return {{std::uint32_t(seed), std::uint32_t(seed >> 32)}}; }

  /// Counter of Philox block `block` for (purpose, token, sample).
  VMOER_HOST_DEVICE constexpr u32x4 counter(Purpose p, std::uint32_t token, std::uint32_t sample,
                                            std::uint32_t block) const {
    return {{block, sample, token, (layer << 8) | std::uint32_t(p)}};
  }

  /// Four random words of Philox block `block` for (purpose, token, sample).
  VMOER_HOST_DEVICE constexpr u32x4 block(Purpose p, std::uint32_t token, std::uint32_t sample,
                                          std::uint32_t block) const {
    return philox4x32<10>(counter(p, token, sample, block), key());
  }
};

}  // namespace vmoer::rng
