// foley golden CASE_DIR: checks foley stage by stage against a golden case of the official
// implementation. Exit status 0 when every stage of the case ran and is within tolerance, 1
// otherwise: a stage this build cannot run fails too (named), unless --skip leaves it out.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "foley/error.h"
#include "foley/golden.h"

namespace foley_cli {

Command add_golden_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("golden", "Check foley against a golden case folder");
  auto dir = std::make_shared<std::string>();
  auto options = std::make_shared<foley::GoldenOptions>();
  cmd->add_option("case_dir", *dir, "case folder (case.json, tensors.safetensors, checkpoints/)")
      ->required();
  cmd->add_option("--backend", options->backend, "cpu (default) or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--stage", options->stages, "run only this stage (repeatable)");
  cmd->add_option("--skip", options->skip_stages,
                  "leave this stage out on purpose (repeatable); otherwise a stage that cannot "
                  "run fails");
  cmd->add_option("--dump", options->dump_dir,
                  "also write each stage's outputs to DIR/<stage>.safetensors");
  cmd->add_option("--dit-dtype", options->dit_dtype,
                  "run the case on a bundle whose DiT is f32 (default), bf16, fp8 or int8, to "
                  "measure how far the dit/sample outputs move (the case's tolerances are f32's)")
      ->check(CLI::IsMember({"f32", "bf16", "fp8", "int8"}));
  auto overrides = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--tolerance", *overrides,
                  "override a check: TENSOR=\"rel 1e-3\" (printed beside the case's own figure)");
  return {cmd, [dir, options, overrides]() {
            for (const auto& o : *overrides) {
              const auto eq = o.find('=');
              if (eq == std::string::npos || eq == 0)
                throw foley::Error(foley::ErrorKind::kInvalidInput,
                                   "--tolerance expects TENSOR=\"rel 1e-3\", got '" + o + "'");
              options->tolerance_overrides[o.substr(0, eq)] = o.substr(eq + 1);
            }
            const foley::GoldenReport report =
                foley::run_golden_case(*dir, *options, [](const foley::GoldenStageResult& r) {
                  std::fputs(foley::format_golden_stage(r).c_str(), stdout);
                  std::fflush(stdout);
                });
            int failed = 0, passed = 0, skipped = 0;
            std::string failed_names;
            for (const auto& s : report.stages) {
              failed += s.status == foley::GoldenStatus::kFail;
              passed += s.status == foley::GoldenStatus::kPass;
              skipped += s.status == foley::GoldenStatus::kSkipped;
              if (s.status == foley::GoldenStatus::kFail)
                failed_names += (failed_names.empty() ? "" : ", ") + s.stage;
            }
            std::printf("%s: stages: %d passed, %d failed, %d skipped (on request)%s\n",
                        report.case_name.c_str(), passed, failed, skipped,
                        failed_names.empty() ? "" : (": failed " + failed_names).c_str());
            return report.ok() ? 0 : 1;
          }};
}

}  // namespace foley_cli
