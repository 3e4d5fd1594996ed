// foley inspect FILE: what a checkpoint or weight file holds, without loading a model.
#include <cstdio>
#include <string>

#include "commands.h"
#include "foley/weights.h"

namespace foley_cli {

Command add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "List tensors and metadata of .safetensors/.pth/.bin");
  auto path = std::make_shared<std::string>();
  auto show_metadata = std::make_shared<bool>(true);
  cmd->add_option("file", *path, "weight or checkpoint file")->required();
  cmd->add_flag("!--no-metadata", *show_metadata, "omit the metadata section");
  return {cmd, [path, show_metadata]() {
    const foley::FileListing listing = foley::inspect_weights_file(*path);
    uint64_t total = 0;
    std::printf("# %s (%s), %zu tensors\n", path->c_str(), listing.format.c_str(),
                listing.tensors.size());
    for (const auto& t : listing.tensors) {
      std::string shape = "[";
      for (size_t i = 0; i < t.shape.size(); ++i)
        shape += (i ? ", " : "") + std::to_string(t.shape[i]);
      shape += "]";
      std::printf("%s\t%s\t%s\t%llu\n", t.name.c_str(), t.dtype.c_str(), shape.c_str(),
                  static_cast<unsigned long long>(t.nbytes));
      total += t.nbytes;
    }
    std::printf("# total %llu bytes\n", static_cast<unsigned long long>(total));
    if (*show_metadata)
      for (const auto& [k, v] : listing.metadata) std::printf("# metadata %s = %s\n", k.c_str(), v.c_str());
    return 0;
  }};
}

}  // namespace foley_cli
