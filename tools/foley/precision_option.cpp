// --precision, shared by the commands that create generators (generate, serve, worker).
#include "commands.h"
#include "foley/foley.h"

namespace foley_cli {

void add_precision_option(CLI::App* cmd, std::string* precision) {
  cmd->add_option("--precision", *precision,
                  "exact (default): every network at the reference's precision; fast: the video "
                  "encoders (SigLIP2, Synchformer) use TF32 for their F32 products on CUDA, "
                  "faster and slightly different (BENCHMARKS.md gives the distance); on the CPU "
                  "fast computes what exact does")
      ->check(CLI::IsMember({"exact", "fast"}));
}

foley::Precision precision_of(const std::string& name) {
  return name == "fast" ? foley::Precision::kFast : foley::Precision::kExact;
}

}  // namespace foley_cli
