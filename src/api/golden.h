// Golden-case runner internals: the stage table.
//
// A stage is a named function that reads its inputs from the case (case.json fields and the
// tensors of tensors.safetensors), runs foley's implementation on the weights converted from the
// case's checkpoints, and returns its outputs, one per tensor listed under the stage's "check"
// in case.json. The runner does all comparing and reporting; a stage only computes.
//
// Each model area adds its stages in its own file through one registration function declared
// here (golden.cpp calls them all): "dac" lives in golden.cpp, "dit" and "sample" in
// golden_dit.cpp; stages of the encoder issue ("siglip2", "synchformer", "clap") will get a
// register_encoder_stages. Stages a case lists but nobody registered are reported as skipped.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "models/weight_store.h"

namespace foley::golden {

class GoldenCase {
 public:
  // Reads <dir>/case.json and opens <dir>/tensors.safetensors; throws Error(kInvalidInput).
  static GoldenCase open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const std::string& name() const { return name_; }
  const nlohmann::json& json() const { return json_; }  // all of case.json
  // A case.json field, e.g. number("steps"), number("guidance"); throws naming it if absent.
  double number(const std::string& field) const;
  std::string string(const std::string& field) const;

  bool has_tensor(const std::string& name) const { return tensors_.has(name); }
  // Zero-copy host view of a stored tensor, in its stored dtype (F32, I64, U8, ...); throws
  // naming the tensor if absent.
  Tensor tensor(const std::string& name) const;
  // <dir>/checkpoints/<relative>
  std::string checkpoint(const std::string& relative) const;

 private:
  std::string dir_;
  std::string name_;
  nlohmann::json json_;
  SafetensorsFile tensors_;
};

// One output of a stage: `tensor` names a key of the stage's "check" object in case.json; `ours`
// is a host tensor of the golden tensor's shape (F32, or I64 for token ids; any strides).
struct StageOutput {
  std::string tensor;
  Tensor ours;
};

struct StageContext {
  const GoldenCase& gcase;
  const WeightStore& weights;  // the bundle converted from gcase's checkpoints, F32
  Backend& backend;
};

using StageFn = std::function<std::vector<StageOutput>(const StageContext&)>;

struct Stage {
  std::string name;                   // the key in case.json "stages"
  std::vector<std::string> networks;  // bundle networks it needs ("dit", "dac", ...)
  StageFn run;
};

// Registration, one function per model area.
void register_dac_stages(std::vector<Stage>& stages);  // golden.cpp: "dac"
void register_dit_stages(
    std::vector<Stage>& stages);  // golden_dit.cpp: "dit", "sample", "text_only"
void register_clap_stages(std::vector<Stage>& stages);         // golden_clap.cpp: "clap"
void register_siglip2_stages(std::vector<Stage>& stages);      // golden_siglip2.cpp: "siglip2"
void register_synchformer_stages(std::vector<Stage>& stages);  // golden_synchformer.cpp

// The whole table, in the order the stages run.
std::vector<Stage> all_stages();

}  // namespace foley::golden
