// vmoer-route: routes the hidden states of a safetensors file with a model family's
// router, as the family's transformers code does, or with a Bayesian router around the
// same weights and convention.
//
//   vmoer-route --family NAME [--top-k K] [--n-group G --topk-group TG --scaling-factor S
//               --norm-topk-prob 0|1 --norm-p P --norm-min M --jitter-eps J]
//               --input IN.safetensors --output OUT.safetensors
//               [--checkpoint DIR --layer N]
//               [--posterior dirac|meanfield|fullcov --samples S --seed N --hidden H --init-sigma V]
//
// IN holds `hidden` [T, D] and, without --checkpoint, the router: `weight` [E, D] and
// optional `bias` [E] and `correction_bias` [E]. OUT receives `ids` int32 [T, K] (each
// row sorted by expert id), `weights` float32 [T, K] aligned with them and `logits`
// float32 [T, E]; Bayesian posteriors add `entropy` and `mutual_information` [T].
// Exit status 0 on success; 2 for bad arguments and 1 for bad input, with a one-line
// message on stderr.
#include <algorithm>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vmoer/io/checkpoint.hpp"
#include "vmoer/io/safetensors.hpp"
#include "vmoer/models/load.hpp"
#include "vmoer/vmoer.hpp"

namespace {

using vmoer::Index;
namespace models = vmoer::models;

constexpr std::string_view usage =
    "usage: vmoer-route --family NAME [--top-k K] [--n-group G --topk-group TG --scaling-factor S "
    "--norm-topk-prob 0|1 --norm-p P --norm-min M --jitter-eps J] --input IN.safetensors --output OUT.safetensors "
    "[--checkpoint DIR --layer N] [--posterior dirac|meanfield|fullcov --samples S --seed N --hidden H "
    "--init-sigma V]";

/// A bad command line: exit status 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The options given, by name without the dashes.
class Options {
 public:
  Options(int argc, char** argv) {
    static const std::vector<std::string_view> known{
        "family",     "top-k",      "n-group",   "topk-group", "scaling-factor", "norm-topk-prob", "norm-p",
        "norm-min",   "jitter-eps", "input",     "output",     "checkpoint",     "layer",          "posterior",
        "samples",    "seed",       "hidden",    "init-sigma"};
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (!arg.starts_with("--")) throw usage_error("unexpected argument '" + std::string(arg) + "'");
      const std::string name(arg.substr(2));
      if (std::find(known.begin(), known.end(), name) == known.end()) throw usage_error("unknown option --" + name);
      if (i + 1 >= argc) throw usage_error("option --" + name + " needs a value");
      if (!values_.emplace(name, argv[++i]).second) throw usage_error("option --" + name + " given twice");
    }
  }

  bool has(const std::string& name) const { return values_.contains(name); }
  std::string text(const std::string& name) const {
    if (!has(name)) throw usage_error("missing option --" + name);
    return values_.at(name);
  }
  Index integer(const std::string& name) const {
    const std::string v = text(name);
    std::size_t used = 0;
    long long x = 0;
    try {
      x = std::stoll(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != v.size()) throw usage_error("--" + name + " takes an integer, got '" + v + "'");
    return Index(x);
  }
  double real(const std::string& name) const {
    const std::string v = text(name);
    std::size_t used = 0;
    double x = 0;
    try {
      x = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != v.size()) throw usage_error("--" + name + " takes a number, got '" + v + "'");
    return x;
  }

 private:
  std::map<std::string, std::string> values_;
};

/// Applies the settings given on the command line, refusing those the family has no use for.
void override_settings(const Options& o, models::Family family, models::Settings& s) {
  const unsigned knobs = models::info(family).knobs;
  const auto allowed = [&](const char* option, unsigned knob) {
    if (!o.has(option)) return false;
    if (!(knobs & knob))
      throw usage_error(std::string("family ") + std::string(models::name(family)) + " has no setting --" + option);
    return true;
  };
  if (allowed("top-k", models::knob_top_k)) s.top_k = o.integer("top-k");
  if (allowed("n-group", models::knob_groups)) s.n_group = o.integer("n-group");
  if (allowed("topk-group", models::knob_groups)) s.topk_group = o.integer("topk-group");
  if (allowed("scaling-factor", models::knob_scaling)) s.scaling = o.real("scaling-factor");
  if (allowed("norm-p", models::knob_norm_p)) s.norm_p = o.real("norm-p");
  if (allowed("norm-min", models::knob_norm_min)) s.norm_min = o.real("norm-min");
  if (allowed("jitter-eps", models::knob_jitter_eps)) s.jitter_eps = o.real("jitter-eps");
  if (allowed("norm-topk-prob", models::knob_norm_topk_prob)) {
    const std::string v = o.text("norm-topk-prob");
    if (v != "0" && v != "1") throw usage_error("--norm-topk-prob takes 0 or 1, got '" + v + "'");
    s.norm_topk_prob = v == "1";
  }
}

/// The router of IN's own tensors `weight`, `bias` and `correction_bias`.
models::LayerRouter<float> router_from_input(const vmoer::io::safetensors_reader& in, const vmoer::Convention& c) {
  models::LayerRouter<float> r;
  r.convention = c;
  r.weight = in.get("weight").to_matrix<float>();
  const Index experts = r.weight.rows();
  const auto vector = [&](std::string_view name) { return in.get(name).require_shape({experts}).copy_to<float>(); };
  if (in.contains("bias")) {
    const std::vector<float> b = vector("bias");
    r.bias = Eigen::Map<const vmoer::Vector<float>>(b.data(), experts);
  }
  if (in.contains("correction_bias")) r.correction_bias = vector("correction_bias");
  return r;
}

/// Routes with the posterior named by --posterior, around the router's weights.
vmoer::Routing<float> route(const Options& o, const models::LayerRouter<float>& r, const vmoer::Matrix<float>& hidden) {
  const std::string posterior = o.has("posterior") ? o.text("posterior") : "dirac";
  const vmoer::RouteOptions keep{.keep_logits = true};
  const bool bayesian = posterior == "meanfield" || posterior == "fullcov";
  if (!bayesian && posterior != "dirac")
    throw usage_error("--posterior takes dirac, meanfield or fullcov, got '" + posterior + "'");
  for (const char* option : {"samples", "seed", "hidden", "init-sigma"})
    if (!bayesian && o.has(option)) throw usage_error(std::string("--") + option + " needs --posterior meanfield or fullcov");
  if (!bayesian) return r.dirac().route(hidden, keep);
  const auto seed = std::uint64_t(o.has("seed") ? o.integer("seed") : 0);
  const vmoer::EncoderOptions encoder{.hidden = o.has("hidden") ? o.integer("hidden") : 64,
                                      .init_sigma = o.has("init-sigma") ? o.real("init-sigma") : 0.1,
                                      .seed = seed};
  const vmoer::MonteCarlo sampler{.samples = o.has("samples") ? o.integer("samples") : 35};
  const vmoer::rng::Stream stream{seed, std::uint32_t(r.layer)};
  if (posterior == "meanfield")
    return vmoer::Router(vmoer::MeanField<float>(r.weight, r.bias, encoder), sampler, r.selector(), stream)
        .route(hidden, keep);
  return vmoer::Router(vmoer::FullCovariance<float>(r.weight, r.bias, encoder), sampler, r.selector(), stream)
      .route(hidden, keep);
}

/// Writes OUT: ids and weights with each row sorted by expert id, logits, and signals
/// of a Bayesian posterior.
void write_output(const std::string& path, const vmoer::Routing<float>& out, bool bayesian) {
  const Index tokens = out.ids.rows(), k = out.ids.cols();
  vmoer::IdMatrix ids(tokens, k);
  vmoer::Matrix<float> weights(tokens, k);
  std::vector<std::pair<std::int32_t, float>> row(static_cast<std::size_t>(k));
  for (Index t = 0; t < tokens; ++t) {
    for (Index i = 0; i < k; ++i) row[std::size_t(i)] = {out.ids(t, i), out.weights(t, i)};
    std::sort(row.begin(), row.end());
    for (Index i = 0; i < k; ++i) std::tie(ids(t, i), weights(t, i)) = row[std::size_t(i)];
  }
  vmoer::io::safetensors_writer w;
  w.add("ids", ids).add("weights", weights).add("logits", out.logits);
  if (bayesian) w.add("entropy", out.signals.entropy).add("mutual_information", out.signals.mutual_information);
  w.save(path);
}

int run(const Options& o) {
  const models::Family family = models::family_from_name(o.text("family"));
  const vmoer::io::safetensors_reader in(o.text("input"));
  const vmoer::Matrix<float> hidden = in.get("hidden").to_matrix<float>();
  models::LayerRouter<float> r;
  if (o.has("checkpoint")) {
    const Index layer = o.integer("layer");
    if (layer < 0) throw usage_error("--layer must be >= 0");
    const vmoer::io::checkpoint ck(o.text("checkpoint"));
    models::Settings s = models::checkpoint_settings(ck, family, layer);
    override_settings(o, family, s);
    r = models::load_router<float>(ck, family, layer, s);
  } else {
    if (o.has("layer")) throw usage_error("--layer needs --checkpoint");
    if (!o.has("top-k")) throw usage_error("missing option --top-k");
    models::Settings s = models::default_settings(family);
    override_settings(o, family, s);
    r = router_from_input(in, models::convention(family, s));
  }
  if (hidden.cols() != r.dim())
    throw vmoer::invalid_argument("vmoer: " + o.text("input") + ": hidden has " + std::to_string(hidden.cols()) +
                                  " columns, the router weight D = " + std::to_string(r.dim()));
  const vmoer::Routing<float> out = route(o, r, hidden);
  write_output(o.text("output"), out, o.has("posterior") && o.text("posterior") != "dirac");
  return 0;
}

/// The message as one line.
std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::cout << usage << '\n';
      return 0;
    }
  try {
    const Options options(argc, argv);
    if (!options.has("input") || !options.has("output") || !options.has("family"))
      throw usage_error("--family, --input and --output are required; " + std::string(usage));
    return run(options);
  } catch (const usage_error& e) {
    std::cerr << "vmoer-route: " << one_line(e.what()) << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "vmoer-route: " << one_line(e.what()) << '\n';
    return 1;
  }
}
