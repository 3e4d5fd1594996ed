// CPU backend against PyTorch (Debian's python3-torch, CPU, float32) for a few shapes per op.
// All cases are written to one temporary directory and tests/python/torch_ops.py computes them
// in a single run (importing torch costs seconds), then each is compared with our op.
// Tolerance is max|ours − torch| / max|torch|: 1e-5 in general, 1e-2 against torch's native bf16
// linear (whose output is rounded to bf16). Skipped when python3-torch is missing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "test_util.h"

namespace foley {
namespace {

using test::max_rel_error;
using test::random_tensor;
using test::to_f32;
using json = nlohmann::json;

CpuBackend& cpu() {
  static CpuBackend backend;
  return backend;
}

struct Case {
  std::string name, op;
  json params = json::object();
  std::vector<std::pair<std::string, Tensor>> inputs;  // as our op takes them (any dtype)
  std::function<Tensor()> ours;
  double tol = 1e-5;
  Tensor torch_out;
};

class CasesBuilder {
 public:
  Case& add(const std::string& name, const std::string& op, json params = json::object()) {
    cases_.push_back(Case{name, op, std::move(params), {}, nullptr, 1e-5, Tensor()});
    return cases_.back();
  }
  std::vector<Case> take() { return std::move(cases_); }

 private:
  std::vector<Case> cases_;
};

// Registers an input and returns it.
Tensor in(Case& c, const std::string& name, Tensor t) {
  c.inputs.emplace_back(name, t);
  return t;
}

Tensor f32(const Shape& s) {
  return Tensor::empty(s, DType::kF32);
}

std::vector<Case> build_cases() {
  CasesBuilder cb;
  uint64_t seed = 1;
  auto rnd = [&](const Shape& s, DType dt = DType::kF32, float lo = -1.f, float hi = 1.f) {
    return random_tensor(s, dt, seed++, lo, hi);
  };

  // ---- linear ----
  {
    Case& c = cb.add("linear_f32", "linear");
    Tensor x = in(c, "x", rnd({3, 37, 200})), w = in(c, "w", rnd({129, 200})),
           b = in(c, "b", rnd({129}));
    c.ours = [=] {
      Tensor y = f32({3, 37, 129});
      cpu().linear(x, w, &b, y, 0.f);
      return y;
    };
  }
  {
    Case& c = cb.add("linear_beta", "linear", {{"beta", 0.5}});
    Tensor x = in(c, "x", rnd({5, 64})), w = in(c, "w", rnd({48, 64})),
           y0 = in(c, "y0", rnd({5, 48}));
    c.ours = [=] {
      Tensor y = f32({5, 48});
      cpu().copy(y, y0);
      cpu().linear(x, w, nullptr, y, 0.5f);
      return y;
    };
  }
  for (const char* mode : {"bf16_emulated", "bf16_native"}) {
    Case& c = cb.add(std::string("linear_") + mode, "linear", {{"mode", mode}});
    Tensor x = in(c, "x", rnd({2, 50, 96}, DType::kF32, -3.f, 3.f));
    Tensor w = in(c, "w", rnd({64, 96}, DType::kBF16)), b = in(c, "b", rnd({64}));
    c.ours = [=] {
      Tensor y = f32({2, 50, 64});
      cpu().linear(x, w, &b, y, 0.f);
      return y;
    };
    if (std::string(mode) == "bf16_native") c.tol = 1e-2;
  }
  {
    Case& c = cb.add("linear_f16", "linear");
    Tensor x = in(c, "x", rnd({7, 96})), w = in(c, "w", rnd({33, 96}, DType::kF16));
    c.ours = [=] {
      Tensor y = f32({7, 33});
      cpu().linear(x, w, nullptr, y, 0.f);
      return y;
    };
  }

  // ---- norms ----
  {
    Case& c = cb.add("layer_norm_affine", "layer_norm", {{"eps", 1e-6}});
    Tensor x = in(c, "x", rnd({2, 33, 257}, DType::kF32, -3.f, 5.f));
    Tensor w = in(c, "w", rnd({257})), b = in(c, "b", rnd({257}));
    c.ours = [=] {
      Tensor y = f32(x.shape());
      cpu().layer_norm(x, &w, &b, 1e-6f, y);
      return y;
    };
  }
  {
    Case& c = cb.add("layer_norm_plain", "layer_norm", {{"eps", 1e-5}});
    Tensor x = in(c, "x", rnd({4, 1536}, DType::kF32, -2.f, 2.f));
    c.ours = [=] {
      Tensor y = f32(x.shape());
      cpu().layer_norm(x, nullptr, nullptr, 1e-5f, y);
      return y;
    };
  }
  for (float eps : {1e-6f, 1.1920929e-07f}) {
    const bool weighted = eps == 1e-6f;  // the triple blocks' RMSNorm; the other is nn.RMSNorm's
    Case& c =
        cb.add(weighted ? "rms_norm_weighted" : "rms_norm_f32_eps", "rms_norm", {{"eps", eps}});
    Tensor x = in(c, "x", rnd({2, 9, 4, 128}));
    Tensor w = weighted ? in(c, "w", rnd({128})) : Tensor();
    c.ours = [=] {
      Tensor y = f32(x.shape());
      cpu().rms_norm(x, weighted ? &w : nullptr, eps, y);
      return y;
    };
  }
  for (bool per_token : {false, true}) {
    Case& c = cb.add(per_token ? "ln_modulate_token" : "ln_modulate_sample", "layer_norm_modulate",
                     {{"eps", 1e-6}});
    const Shape s{2, 21, 96};
    const Shape ms = per_token ? s : Shape{2, 96};
    Tensor x = in(c, "x", rnd(s, DType::kF32, -2.f, 3.f));
    Tensor sh = in(c, "shift", rnd(ms)), sc = in(c, "scale", rnd(ms));
    c.ours = [=] {
      Tensor y = f32(s);
      auto view = [&](const Tensor& t) { return per_token ? t : t.unsqueeze(1).expand(s); };
      cpu().layer_norm_modulate(x, 1e-6f, view(sh), view(sc), y);
      return y;
    };
  }

  // ---- elementwise ----
  const std::vector<std::pair<const char*, Activation>> acts = {
      {"gelu_tanh", Activation::kGeluTanh},
      {"gelu_erf", Activation::kGeluErf},
      {"silu", Activation::kSilu},
      {"tanh", Activation::kTanh}};
  for (const auto& [kind, act] : acts) {
    Case& c = cb.add(std::string("act_") + kind, "activation", {{"kind", kind}});
    Tensor x = in(c, "x", rnd({3, 1000}, DType::kF32, -8.f, 8.f));
    c.ours = [=, act = act] {
      Tensor y = f32(x.shape());
      cpu().activation(act, x, y);
      return y;
    };
  }
  {
    Case& c = cb.add("swiglu", "swiglu");
    Tensor a = in(c, "a", rnd({2, 17, 64}, DType::kF32, -4.f, 4.f)),
           b = in(c, "b", rnd({2, 17, 64}));
    c.ours = [=] {
      Tensor y = f32(a.shape());
      cpu().swiglu(a, b, y);
      return y;
    };
  }
  {
    Case& c = cb.add("snake", "snake");
    Tensor x = in(c, "x", rnd({2, 100, 16}, DType::kF32, -5.f, 5.f));
    Tensor alpha = in(c, "alpha", rnd({16}, DType::kF32, 0.1f, 3.f));
    c.ours = [=] {
      Tensor y = f32(x.shape());
      cpu().snake(x, alpha, y);
      return y;
    };
  }
  {
    Case& c = cb.add("softmax", "softmax");
    Tensor x = in(c, "x", rnd({3, 5, 77}, DType::kF32, -20.f, 20.f));
    c.ours = [=] {
      Tensor y = f32(x.shape());
      cpu().softmax(x, y);
      return y;
    };
  }

  // ---- rope and attention ----
  {
    Case& c = cb.add("rope", "rope");
    Tensor x = in(c, "x", rnd({2, 7, 3, 16})), cs = in(c, "cos", rnd({10, 8})),
           sn = in(c, "sin", rnd({10, 8}));
    c.ours = [=] {
      Tensor y = f32(x.shape());
      cpu().rope(x, {cs, sn}, y);
      return y;
    };
  }
  struct AttnShape {
    const char* name;
    int64_t B, Lq, Lk, H, D;
    bool rope;
  };
  for (const AttnShape& a : {AttnShape{"attn_self_rope", 1, 300, 300, 2, 128, true},
                             AttnShape{"attn_cross_rope", 2, 200, 77, 2, 64, true},
                             AttnShape{"attn_plain", 1, 197, 197, 3, 64, false}}) {
    const float scale = 1.0f / std::sqrt(float(a.D));
    Case& c = cb.add(a.name, "attention", {{"scale", scale}});
    Tensor q = in(c, "q", rnd({a.B, a.Lq, a.H, a.D}, DType::kF32, -2.f, 2.f));
    Tensor k = in(c, "k", rnd({a.B, a.Lk, a.H, a.D}, DType::kF32, -2.f, 2.f));
    Tensor v = in(c, "v", rnd({a.B, a.Lk, a.H, a.D}));
    RopeTable rq, rk;
    if (a.rope) {
      // Real RoPE tables: theta 1e4 over the head dim, positions 0..L-1.
      for (auto [table, L, prefix] : {std::tuple{&rq, a.Lq, "q_"}, std::tuple{&rk, a.Lk, "k_"}}) {
        Tensor cs = f32({L, a.D / 2}), sn = f32({L, a.D / 2});
        for (int64_t l = 0; l < L; ++l)
          for (int64_t i = 0; i < a.D / 2; ++i) {
            const double ang = double(l) * std::pow(1e4, -2.0 * double(i) / double(a.D));
            cs.data<float>()[l * a.D / 2 + i] = float(std::cos(ang));
            sn.data<float>()[l * a.D / 2 + i] = float(std::sin(ang));
          }
        *table = {in(c, std::string(prefix) + "cos", cs), in(c, std::string(prefix) + "sin", sn)};
      }
    }
    const bool use_rope = a.rope;
    c.ours = [=] {
      Tensor out = f32(q.shape());
      cpu().attention(q, k, v, scale, out, use_rope ? &rq : nullptr, use_rope ? &rk : nullptr);
      return out;
    };
  }

  // ---- convolutions, resampling, patches ----
  struct ConvShape {
    int64_t B, T, Ci, Co, K;
    int dil, pad;
    bool bias;
  };
  for (const ConvShape& s :
       {ConvShape{2, 50, 16, 12, 7, 3, 9, true}, ConvShape{1, 40, 8, 8, 3, 1, 1, false},
        ConvShape{1, 30, 6, 5, 7, 1, 3, true}}) {
    Case& c = cb.add("conv1d_d" + std::to_string(s.dil) + "_k" + std::to_string(s.K), "conv1d",
                     {{"dilation", s.dil}, {"pad", s.pad}});
    Tensor x = in(c, "x", rnd({s.B, s.T, s.Ci})), w = in(c, "w", rnd({s.K, s.Co, s.Ci}));
    Tensor b = s.bias ? in(c, "b", rnd({s.Co})) : Tensor();
    const int64_t To = s.T + 2 * s.pad - s.dil * (s.K - 1);
    c.ours = [=] {
      Tensor y = f32({s.B, To, s.Co});
      cpu().conv1d(x, w, s.bias ? &b : nullptr, s.dil, s.pad, y);
      return y;
    };
  }
  struct ConvTShape {
    int64_t B, T, Ci, Co;
    int stride, K, pad, op;
  };
  for (const ConvTShape& s :
       {ConvTShape{1, 12, 16, 8, 8, 16, 4, 0}, ConvTShape{2, 9, 8, 4, 5, 10, 3, 1},
        ConvTShape{1, 10, 6, 3, 3, 6, 2, 1}, ConvTShape{1, 7, 4, 4, 2, 4, 1, 0}}) {
    Case& c = cb.add("conv_t_s" + std::to_string(s.stride), "conv_transpose1d",
                     {{"stride", s.stride}, {"pad", s.pad}, {"output_padding", s.op}});
    Tensor x = in(c, "x", rnd({s.B, s.T, s.Ci})), w = in(c, "w", rnd({s.K, s.Co, s.Ci})),
           b = in(c, "b", rnd({s.Co}));
    const int64_t To = (s.T - 1) * s.stride - 2 * s.pad + s.K + s.op;
    c.ours = [=] {
      Tensor y = f32({s.B, To, s.Co});
      cpu().conv_transpose1d(x, w, &b, s.stride, s.pad, s.op, y);
      return y;
    };
  }
  for (auto [T, To] :
       {std::pair<int64_t, int64_t>{112, 250}, {368, 752}, {240, 499}, {7, 3}, {192, 401}}) {
    Case& c = cb.add("resample_" + std::to_string(T) + "_" + std::to_string(To), "resample",
                     {{"size", To}});
    Tensor x = in(c, "x", rnd({2, T, 5}));
    c.ours = [=] {
      Tensor y = f32({2, To, 5});
      cpu().resample_nearest_exact(x, y);
      return y;
    };
  }
  {
    Case& c = cb.add("patch_embed_2d", "patch_embed");
    Tensor x = in(c, "x", rnd({2, 3, 64, 48})), w = in(c, "w", rnd({32, 3, 16, 16})),
           b = in(c, "b", rnd({32}));
    c.ours = [=] {
      Tensor y = f32({2, 12, 32});
      cpu().patch_embed(x, w, &b, y);
      return y;
    };
  }
  {
    Case& c = cb.add("patch_embed_3d", "patch_embed");
    Tensor x = in(c, "x", rnd({1, 3, 4, 32, 48})), w = in(c, "w", rnd({24, 3, 2, 16, 16})),
           b = in(c, "b", rnd({24}));
    c.ours = [=] {
      Tensor y = f32({1, 12, 24});
      cpu().patch_embed(x, w, &b, y);
      return y;
    };
  }
  return cb.take();
}

void write_f32(const std::string& path, const Tensor& t) {
  const Tensor c = to_f32(t);
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(c.raw()), std::streamsize(c.nbytes()));
}

Tensor read_f32(const std::string& path, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::kF32);
  std::ifstream f(path, std::ios::binary);
  f.read(static_cast<char*>(t.raw()), std::streamsize(t.nbytes()));
  if (f.gcount() != std::streamsize(t.nbytes())) return Tensor();
  return t;
}

// One test for every op: ctest runs each test in its own process, and a python3-torch start per
// op family would cost over a minute. Failures name the case through SCOPED_TRACE.
TEST(CpuVsTorch, AllOps) {
  if (!test::have_python_torch()) FOLEY_SKIP_MISSING("python3-torch not available");
  std::vector<Case> cases = build_cases();
  const std::string dir = test::temp_dir();
  json manifest;
  for (Case& c : cases) {
    json inputs = json::object();
    for (const auto& [name, t] : c.inputs) {
      const std::string file = c.name + "." + name + ".bin";
      write_f32(dir + "/" + file, t);
      inputs[name] = {{"file", file},
                      {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())}};
    }
    manifest["cases"].push_back({{"name", c.name},
                                 {"op", c.op},
                                 {"params", c.params},
                                 {"inputs", inputs},
                                 {"out", c.name + ".out.bin"}});
  }
  std::ofstream(dir + "/manifest.json") << manifest.dump();
  const std::string cmd = std::string(FOLEY_PYTHON) + " " +
                          test::source_path("tests/python/torch_ops.py") + " " + dir + " 2>&1";
  std::string log;
  ASSERT_EQ(test::run_command(cmd, &log), 0) << "torch_ops.py failed:\n" << log;
  const json results = json::parse(std::ifstream(dir + "/results.json"));
  std::map<std::string, int> per_op;
  for (Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(results.contains(c.name)) << "no torch output";
    const Tensor ref = read_f32(dir + "/" + c.name + ".out.bin",
                                Shape(results[c.name].begin(), results[c.name].end()));
    ASSERT_TRUE(ref.defined() && ref.numel() > 0) << "unreadable torch output";
    const Tensor ours = c.ours();
    ASSERT_EQ(ours.shape(), ref.shape());
    const double err = max_rel_error(ours, ref);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2e", err);
    RecordProperty(c.name, buf);  // visible with --gtest_output=xml
    EXPECT_LE(err, c.tol);
    ++per_op[c.op];
  }
  // Every op of the backend has torch coverage.
  for (const char* op :
       {"linear", "layer_norm", "rms_norm", "layer_norm_modulate", "activation", "swiglu", "snake",
        "softmax", "rope", "attention", "conv1d", "conv_transpose1d", "resample", "patch_embed"})
    EXPECT_GT(per_op[op], 0) << op;
  test::run_command("rm -rf " + dir);
}

}  // namespace
}  // namespace foley
