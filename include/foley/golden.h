// Golden cases: checking foley stage by stage against tensors dumped from the official
// HunyuanVideo-Foley implementation (layout described in shared/golden/README.md).
//
// A case folder holds case.json (sizes, the stage table with each stage's checked tensors and
// tolerances), tensors.safetensors (every stage's inputs and expected outputs) and checkpoints/
// (official-format files). `run_golden_case` converts the checkpoints into a temporary F32 bundle,
// runs every stage the case lists that this build implements and compares the outputs.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace foley {

struct GoldenOptions {
  std::string backend = "cpu";      // "cpu" or "cuda"
  std::vector<std::string> stages;  // only these stages (empty: every stage of the case)
  // Stages of the case to leave out on purpose: reported as skipped. Any other stage the case
  // lists that this build has no runner for is a failure naming the stage, so a run cannot pass
  // while silently checking less than the case asks.
  std::vector<std::string> skip_stages;
  // When set, each stage's outputs are also written to <dump_dir>/<stage>.safetensors (for
  // looking at a mismatch with other tools).
  std::string dump_dir;
  // Replaces the case's tolerance for a tensor: tensor name -> check string ("rel 1e-3"). For a
  // check the case asks of that no float32 implementation can meet; every use is printed with
  // the case's own tolerance beside it, and the case's figure still decides the exit status
  // only where no override is given.
  std::map<std::string, std::string> tolerance_overrides;
  // The DiT's storage in the bundle the case is run on: "f32" (the case's own math), or "bf16",
  // "fp8", "int8" to measure how far those move the dit/sample outputs from the reference (the
  // case's tolerances are for f32; give --tolerance overrides to pass).
  std::string dit_dtype = "f32";
};

// One compared tensor. The metric and tolerance come from the case's check string:
// "rel 1e-4" (max|ours − golden| / max|golden|), "abs 0.0079" (max|ours − golden|) or "exact".
struct GoldenCheck {
  std::string tensor;
  std::string metric;  // "rel", "abs" or "exact"
  double error = 0;    // for "exact": the number of differing elements
  double tolerance = 0;
  bool pass = false;
  std::string note;  // e.g. a shape mismatch
};

enum class GoldenStatus { kPass, kFail, kSkipped };

struct GoldenStageResult {
  std::string stage;
  GoldenStatus status = GoldenStatus::kSkipped;  // kSkipped: only when asked (skip_stages)
  std::string message;                           // why it was skipped, or the error that failed it
  std::vector<GoldenCheck> checks;
  double seconds = 0;
};

struct GoldenReport {
  std::string case_name;
  std::vector<GoldenStageResult> stages;
  // True when no stage failed; a stage without a runner counts as failed unless it was in
  // GoldenOptions::skip_stages.
  bool ok() const;
};

// Throws foley::Error when the folder is not a readable case. A stage that fails (beyond its
// tolerance, or by throwing) is reported, not thrown; `on_stage` is called as each one finishes.
GoldenReport run_golden_case(const std::string& case_dir, const GoldenOptions& options,
                             const std::function<void(const GoldenStageResult&)>& on_stage = {});

// One line per check for printing: "dac  dac_out_audio  rel 3.1e-07 <= 1e-04  PASS".
std::string format_golden_stage(const GoldenStageResult& result);

}  // namespace foley
