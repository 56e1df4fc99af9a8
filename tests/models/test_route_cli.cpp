// vmoer-route end to end: on the recorded transformers files, from a checkpoint
// directory, with a Bayesian posterior, and on bad input (non-zero exit, one line on
// stderr, no output file).
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "../io/io_test_support.hpp"
#include "vmoer/io/safetensors.hpp"
#include "vmoer/models/load.hpp"
#include "vmoer/vmoer.hpp"

using namespace vmoer;

namespace {

/// Exit status and stderr of one run of the tool.
struct Run {
  int status;
  std::string error;
};

Run route_cli(const std::string& arguments, const std::filesystem::path& scratch) {
  const std::filesystem::path err = scratch / "stderr.txt";
  const std::string command = std::string(VMOER_ROUTE_EXE) + " " + arguments + " 2> " + err.string();
  const int raw = std::system(command.c_str());
  std::ifstream in(err);
  std::stringstream text;
  text << in.rdbuf();
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, text.str()};
}

Matrix<float> random_matrix(Index rows, Index cols, double scale, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> n(0, float(scale));
  Matrix<float> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = n(g);
  return m;
}

/// The routing `out` as the tool writes it: rows sorted by expert id.
void check_output(const std::filesystem::path& file, const Routing<float>& want) {
  const io::safetensors_reader out(file);
  const IdMatrix ids = out.get("ids").to_matrix<std::int32_t>();
  const Matrix<float> weights = out.get("weights").to_matrix<float>();
  REQUIRE(ids.rows() == want.ids.rows());
  REQUIRE(ids.cols() == want.ids.cols());
  for (Index t = 0; t < ids.rows(); ++t)
    for (Index i = 0; i < ids.cols(); ++i) {
      Index j = 0;
      while (j < ids.cols() && want.ids(t, j) != ids(t, i)) ++j;
      REQUIRE(j < ids.cols());
      CHECK(weights(t, i) == want.weights(t, j));
      if (i > 0) CHECK(ids(t, i - 1) < ids(t, i));
    }
  CHECK(out.get("logits").to_matrix<float>() == want.logits);
}

}  // namespace

TEST_CASE("vmoer-route reproduces the recorded transformers routing") {
  const io::test::temp_directory scratch;
  const std::map<std::string, std::string> settings{
      {"mixtral", "--top-k 2"},
      {"qwen3_moe", "--top-k 8 --norm-topk-prob 1"},
      {"granitemoe", "--top-k 8"},
      {"deepseek_v3", "--top-k 8 --n-group 8 --topk-group 4 --scaling-factor 2.5 --norm-topk-prob 1"},
      {"gpt_oss", "--top-k 4"},
      {"llama4", "--top-k 1"},
  };
  for (const auto& setting : settings) {  // no structured binding: CAPTURE's lambda would need Clang 16
    const std::string& family = setting.first;
    const std::string& options = setting.second;
    CAPTURE(family);
    const std::string in = VMOER_TEST_DATA "/hf_routing/" + family + ".safetensors";
    const std::filesystem::path out = scratch.path() / (family + ".safetensors");
    const Run run = route_cli("--family " + family + " " + options + " --input " + in + " --output " + out.string(),
                              scratch.path());
    CAPTURE(run.error);
    REQUIRE(run.status == 0);
    const io::safetensors_reader expected(in), got(out);
    const IdMatrix ids = got.get("ids").to_matrix<std::int32_t>();
    const Matrix<float> weights = got.get("weights").to_matrix<float>();
    CHECK(ids == expected.get("ids").to_matrix<std::int32_t>());
    const Matrix<float> w = expected.get("weights").to_matrix<float>();
    CHECK(((weights - w).cwiseAbs().array() <= 1e-5f * w.cwiseAbs().array()).all());
    const Matrix<float> l = expected.get("logits").to_matrix<float>();
    CHECK(((got.get("logits").to_matrix<float>() - l).cwiseAbs().array() <= 1e-5f * (1 + l.cwiseAbs().array())).all());
  }
}

TEST_CASE("vmoer-route loads a checkpoint layer and routes Bayesian posteriors around it") {
  const io::test::temp_directory scratch;
  const std::filesystem::path dir = scratch.path() / "model", in = scratch.path() / "in.safetensors";
  std::filesystem::create_directories(dir);
  const Matrix<float> w0 = random_matrix(16, 12, 0.3, 1), w1 = random_matrix(16, 12, 0.3, 2);
  const Matrix<float> bias = random_matrix(1, 16, 0.05, 3), hidden = random_matrix(30, 12, 1, 4);
  io::safetensors_writer()
      .add("model.layers.0.mlp.gate.weight", w0)
      .add("model.layers.1.mlp.gate.weight", w1)
      .add("model.layers.1.mlp.gate.e_score_correction_bias", std::vector<Index>{16},
           std::span<const float>(bias.data(), 16))
      .save(dir / "model.safetensors");
  std::ofstream(dir / "config.json") << R"({"n_routed_experts":16,"num_experts_per_tok":3,"n_group":4,"topk_group":2,
                                          "routed_scaling_factor":2.0,"norm_topk_prob":true})";
  io::safetensors_writer().add("hidden", hidden).save(in);

  models::Settings s = models::default_settings(models::Family::glm4_moe);
  s.top_k = 3, s.n_group = 4, s.topk_group = 2, s.scaling = 2.0;
  const std::vector<float> correction(bias.data(), bias.data() + 16);
  const TopK selector{models::convention(models::Family::glm4_moe, s), correction};

  const std::filesystem::path out = scratch.path() / "out.safetensors";
  const std::string common = "--family glm4_moe --checkpoint " + dir.string() + " --layer 1 --input " + in.string() +
                             " --output " + out.string();
  Run run = route_cli(common, scratch.path());
  CAPTURE(run.error);
  REQUIRE(run.status == 0);
  check_output(out, Router(Dirac<float>(w1), MeanOnly{}, selector, rng::Stream{0, 1}).route(hidden, {.keep_logits = true}));

  // A command-line setting overrides config.json.
  run = route_cli(common + " --top-k 2", scratch.path());
  REQUIRE(run.status == 0);
  CHECK(io::safetensors_reader(out).get("ids").shape()[1] == 2);

  const EncoderOptions encoder{.hidden = 8, .init_sigma = 0.5, .seed = 9};
  run = route_cli(common + " --posterior meanfield --samples 16 --seed 9 --hidden 8 --init-sigma 0.5", scratch.path());
  REQUIRE(run.status == 0);
  const Routing<float> mf = Router(MeanField<float>(w1, {}, encoder), MonteCarlo{.samples = 16}, selector,
                                   rng::Stream{9, 1})
                                .route(hidden, {.keep_logits = true});
  check_output(out, mf);
  CHECK(io::safetensors_reader(out).get("mutual_information").to_vector<float>() == mf.signals.mutual_information);

  run = route_cli(common + " --posterior fullcov --samples 16 --seed 9 --hidden 8 --init-sigma 0.5", scratch.path());
  REQUIRE(run.status == 0);
  check_output(out, Router(FullCovariance<float>(w1, {}, encoder), MonteCarlo{.samples = 16}, selector,
                           rng::Stream{9, 1})
                        .route(hidden, {.keep_logits = true}));
}

TEST_CASE("vmoer-route refuses bad input with a one-line message and writes nothing") {
  const io::test::temp_directory scratch;
  const std::filesystem::path good = scratch.path() / "good.safetensors", out = scratch.path() / "out.safetensors";
  const Matrix<float> weight = random_matrix(8, 6, 0.3, 1), hidden = random_matrix(5, 6, 1, 2);
  io::safetensors_writer().add("hidden", hidden).add("weight", weight).save(good);
  const auto file = [&](const std::string& name, auto&& fill) {
    io::safetensors_writer w;
    fill(w);
    w.save(scratch.path() / name);
    return (scratch.path() / name).string();
  };
  Matrix<float> nan_hidden = hidden;
  nan_hidden(2, 3) = std::numeric_limits<float>::quiet_NaN();
  const std::string wrong_dim = file("wrong_dim.safetensors", [&](auto& w) {
    w.add("hidden", random_matrix(5, 7, 1, 3)).add("weight", weight);
  });
  const std::string no_weight = file("no_weight.safetensors", [&](auto& w) { w.add("hidden", hidden); });
  const std::string bad_bias = file("bad_bias.safetensors", [&](auto& w) {
    w.add("hidden", hidden).add("weight", weight).add("bias", Vector<float>::Zero(7).eval());
  });
  const std::string nan = file("nan.safetensors", [&](auto& w) { w.add("hidden", nan_hidden).add("weight", weight); });
  const std::string truncated = (scratch.path() / "truncated.safetensors").string();
  {
    const std::vector<std::byte> bytes = io::safetensors_writer().add("hidden", hidden).bytes();
    io::test::write_bytes(truncated, std::vector<std::byte>(bytes.begin(), bytes.end() - 8));
  }
  const std::string io = " --output " + out.string();
  const std::vector<std::pair<std::string, std::string>> cases{
      {"--top-k 2 --input " + good.string() + io, "--family, --input and --output are required"},
      {"--family mixtral2 --top-k 2 --input " + good.string() + io, "unknown family 'mixtral2'"},
      {"--family mixtral --input " + good.string() + io, "missing option --top-k"},
      {"--family mixtral --top-k two --input " + good.string() + io, "--top-k takes an integer, got 'two'"},
      {"--family mixtral --top-k 9 --input " + good.string() + io, "top_k K = 9 must be in [1, E = 8]"},
      {"--family mixtral --top-k 2 --n-group 2 --input " + good.string() + io, "family mixtral has no setting --n-group"},
      {"--family qwen3_moe --top-k 2 --norm-topk-prob 2 --input " + good.string() + io, "--norm-topk-prob takes 0 or 1"},
      {"--family phimoe --top-k 3 --input " + good.string() + io, "exactly 2 experts"},
      {"--family mixtral --top-k 2 --posterior gaussian --input " + good.string() + io, "--posterior takes dirac"},
      {"--family mixtral --top-k 2 --samples 4 --input " + good.string() + io, "--samples needs --posterior"},
      {"--family mixtral --top-k 2 --bogus 1 --input " + good.string() + io, "unknown option --bogus"},
      {"--family mixtral --top-k 2 --input " + wrong_dim + io, "hidden has 7 columns, the router weight D = 6"},
      {"--family mixtral --top-k 2 --input " + no_weight + io, "no tensor 'weight'"},
      {"--family gpt_oss --top-k 2 --input " + bad_bias + io, "tensor 'bias': expected shape [8], found [7]"},
      {"--family mixtral --top-k 2 --input " + nan + io, "hidden[2, 3] = nan is not finite"},
      {"--family mixtral --top-k 2 --input " + truncated + io, "exceed the data section"},
      {"--family mixtral --top-k 2 --input " + (scratch.path() / "absent.safetensors").string() + io, "absent.safetensors"},
      {"--family mixtral --checkpoint " + scratch.path().string() + " --layer 0 --input " + good.string() + io,
       "holds neither model.safetensors nor model.safetensors.index.json"},
  };
  for (const auto& c : cases) {  // no structured binding: CAPTURE's lambda would need Clang 16
    const std::string& arguments = c.first;
    const std::string& message = c.second;
    CAPTURE(arguments);
    const Run run = route_cli(arguments, scratch.path());
    CAPTURE(run.error);
    CHECK(run.status != 0);
    CHECK(run.error.find(message) != std::string::npos);
    CHECK(run.error.starts_with("vmoer-route: "));
    CHECK(std::count(run.error.begin(), run.error.end(), '\n') == 1);
    CHECK_FALSE(std::filesystem::exists(out));
  }
}
