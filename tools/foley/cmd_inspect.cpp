// foley inspect FILE: what a checkpoint or weight file holds, without loading a model.
#include <cstdio>
#include <string>

#include "commands.h"
#include "foley/error.h"
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
    // A foley bundle: what `foley models` lists, and the content hashes.
    const auto format = listing.metadata.find("format");
    if (listing.format == "safetensors" && format != listing.metadata.end() &&
        format->second == "foley" && listing.metadata.count("format_version")) {
      try {
        const foley::BundleInfo b = foley::inspect_bundle(*path);
        std::string nets;
        for (const auto& n : b.networks) nets += (nets.empty() ? "" : ", ") + n;
        std::printf("# bundle format version %s%s, networks: %s, %llu parameters\n",
                    b.format_version.c_str(),
                    b.supported_version ? "" : " (not loadable by this foley)", nets.c_str(),
                    static_cast<unsigned long long>(b.total_parameters));
        if (b.has_dit)
          std::printf("# bundle variant %s: DiT %s\n", b.variant.c_str(),
                      dit_summary_text(b.dit).c_str());
        for (const auto& n : b.networks) {
          const auto h = b.content_hashes.find(n);
          const auto p = b.parameters.find(n);
          std::printf("# bundle %s: %llu parameters, content hash %s\n", n.c_str(),
                      static_cast<unsigned long long>(p == b.parameters.end() ? 0 : p->second),
                      h == b.content_hashes.end() ? "not recorded" : h->second.c_str());
        }
      } catch (const foley::Error& e) {
        std::printf("# bundle: unreadable: %s\n", e.what());
      }
    }
    return 0;
  }};
}

}  // namespace foley_cli
