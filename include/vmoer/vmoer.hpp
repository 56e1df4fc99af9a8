// vmoer: Bayesian Mixture-of-Experts routers. The public entry point; it includes
// the public pieces and nothing else.
//
//   #include <vmoer/vmoer.hpp>
//   vmoer::Router router(vmoer::MeanField<float>(W, b), vmoer::MonteCarlo{32},
//                        vmoer::TopK{{.top_k = 8}}, vmoer::rng::Stream{seed, layer}, vmoer::Cpu{});
//   auto r = router.route(hidden);   // r.ids, r.weights, r.signals
#pragma once

#include "vmoer/version.hpp"
#include "vmoer/error.hpp"
#include "vmoer/types.hpp"
#include "vmoer/params.hpp"
#include "vmoer/rng/philox.hpp"
#include "vmoer/rng/stream.hpp"
#include "vmoer/rng/normal.hpp"
#include "vmoer/posterior/dirac.hpp"
#include "vmoer/posterior/diagonal.hpp"
#include "vmoer/posterior/cholesky.hpp"
#include "vmoer/posterior/low_rank.hpp"
#include "vmoer/sampler/monte_carlo.hpp"
#include "vmoer/sampler/mean_only.hpp"
#include "vmoer/sampler/moment_matched.hpp"
#include "vmoer/selector/convention.hpp"
#include "vmoer/selector/top_k.hpp"
#include "vmoer/selector/temperature.hpp"
#include "vmoer/selector/sample_k.hpp"
#include "vmoer/selector/learned_temperature.hpp"
#include "vmoer/models/families.hpp"
#include "vmoer/routing.hpp"
#include "vmoer/router.hpp"
#include "vmoer/backend/cpu.hpp"
#include "vmoer/posterior/mc_dropout.hpp"
#include "vmoer/posterior/swag.hpp"
#include "vmoer/grad/backward.hpp"
#include "vmoer/train/elbo.hpp"
