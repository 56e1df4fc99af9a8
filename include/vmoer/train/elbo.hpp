// The training objective of a variational router, the negative ELBO per token:
//   L = task loss (from the framework, e.g. the LM cross-entropy)
//       + beta * reduce_t KL(q(l | u_t) || N(l_det(u_t), s^2 I))
//       + gamma * reduce_t (-mean_g log T_g(u_t))            (VTSR only)
// vmoer::backward computes the last two terms and adds their gradients to the task
// loss's (Gradients::regularisers holds their value), so assembling the ELBO is one
// addition. Training draws S_train samples per token (1 by default, as the papers
// train), inference S_test (35, the papers' value).
#pragma once

#include "vmoer/grad/gradients.hpp"
#include "vmoer/sampler/monte_carlo.hpp"

namespace vmoer::train {

/// S_train: samples per token while training (one reparameterised draw).
inline constexpr Index default_train_samples = 1;
/// S_test: samples per token at inference, the papers' value.
inline constexpr Index default_test_samples = 35;

/// The Monte-Carlo sampler of a training step.
inline MonteCarlo training_sampler(Index samples = default_train_samples) { return MonteCarlo{.samples = samples}; }
/// The Monte-Carlo sampler of inference.
inline MonteCarlo test_sampler(Index samples = default_test_samples) { return MonteCarlo{.samples = samples}; }

/// The negative ELBO: the framework's task loss plus the router's regularisers
/// (beta KL and gamma (-log T), reduced as BackwardOptions::regularisers says).
template <class T>
T negative_elbo(T task_loss, const Gradients<T>& gradients) {
  return task_loss + gradients.regularisers;
}

}  // namespace vmoer::train
