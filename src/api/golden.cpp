// The golden-case runner: opens a case, converts its checkpoints, runs every registered stage the
// case lists and compares the outputs with the case's tolerances. Also the "dac" stage.
#include "api/golden.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "convert/convert.h"
#include "core/check.h"
#include "core/host_values.h"
#include "foley/golden.h"
#include "models/dac_decoder.h"

namespace foley {
namespace golden {
namespace {

namespace fs = std::filesystem;

// "rel 1e-4", "abs 0.0079 (two uint8 levels ...)", "exact".
GoldenCheck parse_check(const std::string& tensor, const std::string& spec) {
  GoldenCheck c;
  c.tensor = tensor;
  std::istringstream in(spec);
  in >> c.metric;
  if (c.metric == "exact") return c;
  if ((c.metric != "rel" && c.metric != "abs") || !(in >> c.tolerance) || !(c.tolerance >= 0))
    throw Error(ErrorKind::kInvalidInput, "case.json: check for " + tensor + " is \"" + spec +
                                              "\", expected \"rel X\", \"abs X\" or \"exact\"");
  return c;
}

void compare(GoldenCheck& c, const Tensor& ours, const Tensor& golden) {
  if (ours.shape() != golden.shape()) {
    c.error = INFINITY;
    c.note = "shape " + ours.shape().str() + ", golden " + golden.shape().str();
    return;
  }
  const std::vector<double> a = host_values(ours), b = host_values(golden);
  if (c.metric == "exact") {
    size_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
    c.error = static_cast<double>(differ);
    c.pass = differ == 0;
    return;
  }
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(a[i] - b[i]);
    max_diff = std::isnan(d) ? INFINITY : std::max(max_diff, d);
    max_ref = std::max(max_ref, std::fabs(b[i]));
  }
  c.error = c.metric == "rel" && max_ref > 0 ? max_diff / max_ref : max_diff;
  c.pass = c.error <= c.tolerance;
}

// Writes a stage's outputs as one safetensors file (contiguous copies; F32 unless integer).
void dump_outputs(const std::string& path, const std::vector<StageOutput>& outputs) {
  SafetensorsWriter w;
  for (const auto& o : outputs) {
    const bool integer = o.ours.dtype() == DType::kI64 || o.ours.dtype() == DType::kI32;
    Tensor copy = Tensor::empty(o.ours.shape(), integer ? DType::kI64 : DType::kF32);
    const std::vector<double> v = host_values(o.ours);
    for (size_t i = 0; i < v.size(); ++i) {
      if (integer) {
        copy.data<int64_t>()[i] = static_cast<int64_t>(v[i]);
      } else {
        copy.data<float>()[i] = static_cast<float>(v[i]);
      }
    }
    w.add(o.tensor, copy);
  }
  w.write(path);
}

// The failure of a stage the case lists but this build has no runner for.
std::string no_runner(const std::string& stage) {
  return "stage \"" + stage + "\" cannot run: not implemented in this build (--skip " + stage +
         " leaves it out on purpose)";
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") {
    auto b = make_cuda_backend(0);
    if (!b) throw Error(ErrorKind::kUnsupported, "no CUDA backend in this build or no device");
    return b;
  }
  throw Error(ErrorKind::kInvalidInput, "unknown backend \"" + name + "\" (cpu or cuda)");
}

// A temporary directory removed on scope exit.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "foley-golden-XXXXXX").string();
    if (!mkdtemp(tmpl.data()))
      throw Error(ErrorKind::kInternal, "cannot create a temporary directory");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---- the "dac" stage ----------------------------------------------------------------------------

std::vector<StageOutput> run_dac(const StageContext& ctx) {
  Backend& be = ctx.backend;
  const DacDecoder dac(ctx.weights, be);
  // The golden latent is channels-first [1, 128, Ta]; foley is channel-last [1, Ta, 128].
  const Tensor golden = ctx.gcase.tensor("dac_in_latent");
  const int64_t channels = golden.dim(1), frames = golden.dim(2);
  Tensor latent_host = Tensor::empty({1, frames, channels}, DType::kF32);
  const std::vector<double> v = host_values(golden.transpose(1, 2));
  for (size_t i = 0; i < v.size(); ++i) latent_host.data<float>()[i] = static_cast<float>(v[i]);

  auto arena = dac.make_workspace(static_cast<int>(frames));
  Arena io(be.block_allocator());
  Tensor latent = io.alloc(latent_host.shape(), DType::kF32);
  Tensor audio = io.alloc({1, frames * dac.config().hop()}, DType::kF32);
  be.copy_from_host(latent, latent_host);
  dac.decode(latent, audio, *arena);
  Tensor audio_host = Tensor::empty(audio.shape(), DType::kF32);
  be.copy_to_host(audio_host, audio);
  be.synchronize();
  return {{"dac_out_audio", audio_host.reshape({1, 1, audio.dim(1)})}};
}

}  // namespace

// ---- GoldenCase -------------------------------------------------------------------------------

GoldenCase GoldenCase::open(const std::string& dir) {
  GoldenCase c;
  c.dir_ = dir;
  const fs::path json_path = fs::path(dir) / "case.json";
  std::ifstream in(json_path);
  if (!in) throw Error(ErrorKind::kNotFound, dir + ": not a golden case folder (no case.json)");
  try {
    c.json_ = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::kInvalidInput, json_path.string() + ": " + e.what());
  }
  if (!c.json_.is_object() || !c.json_.contains("stages") || !c.json_["stages"].is_object())
    throw Error(ErrorKind::kInvalidInput, json_path.string() + ": no \"stages\" object");
  c.name_ = c.json_.value("case", fs::path(dir).filename().string());
  c.tensors_ = SafetensorsFile::open((fs::path(dir) / "tensors.safetensors").string());
  return c;
}

double GoldenCase::number(const std::string& field) const {
  if (!json_.contains(field) || !json_[field].is_number())
    throw Error(ErrorKind::kInvalidInput, name_ + ": case.json has no number \"" + field + "\"");
  return json_[field].get<double>();
}

std::string GoldenCase::string(const std::string& field) const {
  if (!json_.contains(field) || !json_[field].is_string())
    throw Error(ErrorKind::kInvalidInput, name_ + ": case.json has no string \"" + field + "\"");
  return json_[field].get<std::string>();
}

Tensor GoldenCase::tensor(const std::string& name) const {
  if (!tensors_.has(name))
    throw Error(ErrorKind::kInvalidInput, name_ + ": tensors.safetensors has no " + name);
  return tensors_.tensor(name);
}

std::string GoldenCase::checkpoint(const std::string& relative) const {
  return (fs::path(dir_) / "checkpoints" / relative).string();
}

void register_dac_stages(std::vector<Stage>& stages) {
  stages.push_back({"dac", {"dac"}, run_dac});
}

std::vector<Stage> all_stages() {
  std::vector<Stage> stages;
  register_dit_stages(stages);
  register_dac_stages(stages);
  register_clap_stages(stages);
  register_siglip2_stages(stages);
  register_synchformer_stages(stages);
  return stages;
}

}  // namespace golden

// ---- the public runner ------------------------------------------------------------------------

bool GoldenReport::ok() const {
  for (const auto& s : stages)
    if (s.status == GoldenStatus::kFail) return false;
  return true;
}

GoldenReport run_golden_case(const std::string& case_dir, const GoldenOptions& options,
                             const std::function<void(const GoldenStageResult&)>& on_stage) {
  using namespace golden;
  const GoldenCase gcase = GoldenCase::open(case_dir);
  GoldenReport report;
  report.case_name = gcase.name();
  auto backend = make_backend(options.backend);

  // The stages to consider, in case.json's order (its "stages" object, read order-preserving).
  std::vector<std::string> order;
  {
    std::ifstream in(std::filesystem::path(case_dir) / "case.json");
    const auto ordered = nlohmann::ordered_json::parse(in);
    for (const auto& [name, _] : ordered["stages"].items()) order.push_back(name);
  }
  for (const auto* list : {&options.stages, &options.skip_stages})
    for (const auto& want : *list)
      if (std::find(order.begin(), order.end(), want) == order.end())
        throw Error(ErrorKind::kInvalidInput, gcase.name() + " has no stage \"" + want + "\"");
  auto listed = [](const std::vector<std::string>& list, const std::string& name) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  auto skipped_on_request = [&](const std::string& name) {
    return listed(options.skip_stages, name);
  };
  auto selected = [&](const std::string& name) {
    return options.stages.empty() || listed(options.stages, name);
  };

  std::map<std::string, Stage> registered;
  for (auto& s : all_stages()) registered[s.name] = s;

  // Convert only the networks that the stages to run need; one network's failure only fails
  // the stages that need it.
  std::set<std::string> needed;
  for (const auto& name : order)
    if (selected(name) && !skipped_on_request(name) && registered.count(name))
      needed.insert(registered[name].networks.begin(), registered[name].networks.end());
  OfficialFiles files;
  if (needed.count("dit")) {
    files.dit_checkpoint = gcase.checkpoint("hunyuanvideo_foley.pth");
    files.dit_config = gcase.checkpoint("config.yaml");
  }
  if (needed.count("dac")) files.dac_checkpoint = gcase.checkpoint("vae_128d_48k.pth");
  if (needed.count("clap")) files.clap_dir = gcase.checkpoint("clap");
  if (needed.count("siglip2")) files.siglip2_dir = gcase.checkpoint("siglip2");
  if (needed.count("synchformer"))
    files.synchformer_checkpoint = gcase.checkpoint("synchformer_state_dict.pth");
  ConvertOptions convert_options;
  convert_options.dit_dtype = DType::kF32;  // the cases are float32 math on the stored values
  if (options.dit_dtype == "bf16" || options.dit_dtype == "fp8" || options.dit_dtype == "int8") {
    convert_options.dit_dtype = DType::kBF16;
    if (options.dit_dtype != "bf16")
      convert_options.dit_quant =
          options.dit_dtype == "fp8" ? QuantFormat::kE4M3 : QuantFormat::kI8;
  } else if (options.dit_dtype != "f32") {
    throw Error(ErrorKind::kInvalidInput,
                "golden: dit dtype must be f32, bf16, fp8 or int8, got " + options.dit_dtype);
  }
  golden::TempDir tmp;
  const std::string bundle_path = tmp.path() + "/bundle.safetensors";
  BundleResult bundle;
  std::shared_ptr<WeightStore> weights;
  std::string bundle_error;
  if (!needed.empty()) {
    try {
      bundle = write_bundle(official_sources(files, convert_options), convert_options, bundle_path,
                            /*skip_failed=*/true);
      weights = WeightStore::open(bundle_path);
    } catch (const Error& e) {
      bundle_error = e.what();
    }
  }

  for (const auto& name : order) {
    if (!selected(name)) continue;
    GoldenStageResult r;
    r.stage = name;
    auto it = registered.find(name);
    const auto start = std::chrono::steady_clock::now();
    if (skipped_on_request(name)) {
      r.status = GoldenStatus::kSkipped;
      r.message = "left out on request";
    } else if (it == registered.end()) {
      r.status = GoldenStatus::kFail;
      r.message = no_runner(name);
    } else {
      std::string why;
      for (const auto& net : it->second.networks) {
        if (bundle.failed.count(net)) why = bundle.failed.at(net);
      }
      if (why.empty() && !weights) why = bundle_error;
      if (!why.empty()) {
        r.status = GoldenStatus::kFail;
        r.message = why;
      } else {
        try {
          const StageContext ctx{gcase, *weights, *backend};
          const std::vector<StageOutput> outputs = it->second.run(ctx);
          if (!options.dump_dir.empty()) {
            std::filesystem::create_directories(options.dump_dir);
            dump_outputs(options.dump_dir + "/" + name + ".safetensors", outputs);
          }
          r.status = GoldenStatus::kPass;
          for (const auto& [tensor, spec] : gcase.json()["stages"][name]["check"].items()) {
            GoldenCheck c = parse_check(tensor, spec.get<std::string>());
            const auto override_it = options.tolerance_overrides.find(tensor);
            if (override_it != options.tolerance_overrides.end()) {
              c = parse_check(tensor, override_it->second);
              c.note = "override: the case asks " + spec.get<std::string>();
            }
            auto out = std::find_if(outputs.begin(), outputs.end(),
                                    [&](const StageOutput& o) { return o.tensor == tensor; });
            if (out == outputs.end()) {
              c.error = INFINITY;
              c.note = "not produced by the stage";
            } else {
              compare(c, out->ours, gcase.tensor(tensor));
            }
            if (!c.pass) r.status = GoldenStatus::kFail;
            r.checks.push_back(c);
          }
        } catch (const std::exception& e) {
          r.status = GoldenStatus::kFail;
          r.checks.clear();
          r.message = e.what();
        }
      }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_stage) on_stage(r);
    report.stages.push_back(std::move(r));
  }
  return report;
}

std::string format_golden_stage(const GoldenStageResult& r) {
  char buf[512];
  std::string out;
  if (r.status == GoldenStatus::kSkipped) {
    std::snprintf(buf, sizeof buf, "%-12s skipped (%s)\n", r.stage.c_str(), r.message.c_str());
    return buf;
  }
  if (r.checks.empty()) {
    std::snprintf(buf, sizeof buf, "%-12s FAIL  %s\n", r.stage.c_str(), r.message.c_str());
    return buf;
  }
  for (const auto& c : r.checks) {
    if (c.metric == "exact") {
      std::snprintf(buf, sizeof buf, "%-12s %-24s exact: %.0f differing           %s",
                    r.stage.c_str(), c.tensor.c_str(), c.error, c.pass ? "PASS" : "FAIL");
    } else {
      std::snprintf(buf, sizeof buf, "%-12s %-24s %s %.3g (tolerance %.3g)  %s", r.stage.c_str(),
                    c.tensor.c_str(), c.metric.c_str(), c.error, c.tolerance,
                    c.pass ? "PASS" : "FAIL");
    }
    out += buf;
    if (!c.note.empty()) out += "  [" + c.note + "]";
    std::snprintf(buf, sizeof buf, "  %.2fs\n", r.seconds);
    out += buf;
  }
  return out;
}

}  // namespace foley
