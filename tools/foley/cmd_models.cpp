// foley models DIR: the foley bundles in a folder (variant, DiT, parameters, size, networks,
// format version, content hashes), as a table or --json; files that are not bundles or are
// damaged are listed with the reason.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "foley/error.h"
#include "foley/weights.h"

namespace foley_cli {

std::string dit_summary_text(const foley::DitSummary& d) {
  std::string s = "hidden " + std::to_string(d.hidden) + ", " + std::to_string(d.heads) +
                  " heads, " + std::to_string(d.depth_double) + "+" +
                  std::to_string(d.depth_single) + " blocks";
  if (!d.dtype.empty()) s += ", " + d.dtype;
  return s;
}

namespace {

// 1234567 -> "1.23 M" (decimal steps of 1000; no fraction below the first unit).
std::string scaled(double v, const char* const units[], int n_units, int decimals) {
  int u = 0;
  while (u + 1 < n_units && v >= 1000.0) v /= 1000.0, ++u;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.*f %s", u == 0 ? 0 : decimals, v, units[u]);
  return buf;
}

std::string params_text(uint64_t n) {
  static const char* const units[] = {"", "K", "M", "B"};
  std::string s = scaled(static_cast<double>(n), units, 4, 2);
  if (s.back() == ' ') s.pop_back();
  return s;
}

std::string bytes_text(uint64_t n) {
  static const char* const units[] = {"B", "KB", "MB", "GB", "TB"};
  return scaled(static_cast<double>(n), units, 5, 1);
}

std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

nlohmann::json entry_json(const foley::BundleEntry& e, const std::vector<std::string>* damaged) {
  nlohmann::json j = {{"name", e.name}, {"path", e.path}, {"bytes", e.file_bytes}};
  if (!e.error.empty()) {
    j["ok"] = false;
    j["error"] = e.error;
    return j;
  }
  const foley::BundleInfo& b = e.info;
  j["ok"] = damaged == nullptr || damaged->empty();
  j["format_version"] = b.format_version;
  j["supported_version"] = b.supported_version;
  j["converter"] = b.converter;
  j["variant"] = b.variant.empty() ? nlohmann::json() : nlohmann::json(b.variant);
  j["networks"] = b.networks;
  j["parameters"] = b.total_parameters;
  j["parameters_by_network"] = b.parameters;
  j["content_hashes"] = b.content_hashes;
  if (b.has_dit)
    j["dit"] = {{"hidden_size", b.dit.hidden},
                {"num_heads", b.dit.heads},
                {"depth_double_blocks", b.dit.depth_double},
                {"depth_single_blocks", b.dit.depth_single},
                {"dtype", b.dit.dtype}};
  else
    j["dit"] = nullptr;
  if (damaged != nullptr) {
    j["verified"] = damaged->empty();
    if (!damaged->empty()) {
      j["error"] = "content hash differs for " + joined(*damaged, ", ");
      j["damaged_networks"] = *damaged;
    }
  }
  return j;
}

}  // namespace

Command add_models_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "models", "List the foley bundles (*.safetensors from `foley convert`) in a folder");
  auto dir = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto verify = std::make_shared<bool>(false);
  cmd->add_option("dir", *dir, "folder to list (not its subfolders)")->required();
  cmd->add_flag("--json", *json, "machine-readable output: one JSON object");
  cmd->add_flag("--verify", *verify,
                "also recompute every network's content hash from the tensor bytes (reads the "
                "whole files) and report bundles whose bytes differ from what was converted");
  return {cmd, [dir, json, verify]() {
            std::vector<foley::BundleEntry> entries = foley::list_bundles(*dir);
            std::vector<std::vector<std::string>> damaged(entries.size());
            for (size_t i = 0; i < entries.size(); ++i) {
              if (!*verify || !entries[i].error.empty()) continue;
              try {
                damaged[i] = foley::verify_bundle_hashes(entries[i].path);
              } catch (const foley::Error& e) {
                entries[i].error = e.what();  // e.g. a file that changed since it was listed
              }
            }
            if (*json) {
              nlohmann::json out = {{"dir", *dir}, {"bundles", nlohmann::json::array()}};
              for (size_t i = 0; i < entries.size(); ++i)
                out["bundles"].push_back(entry_json(entries[i], *verify ? &damaged[i] : nullptr));
              std::printf("%s\n", out.dump(2).c_str());
              return 0;
            }
            if (entries.empty()) {
              std::printf("no .safetensors files in %s\n", dir->c_str());
              return 0;
            }
            std::vector<std::vector<std::string>> rows = {
                {"NAME", "VARIANT", "DIT", "PARAMS", "SIZE", "NETWORKS", "FORMAT"}};
            for (size_t i = 0; i < entries.size(); ++i) {
              const foley::BundleEntry& e = entries[i];
              if (!e.error.empty()) {
                rows.push_back(
                    {e.name, "-", "-", "-", bytes_text(e.file_bytes), "-", "error: " + e.error});
                continue;
              }
              const foley::BundleInfo& b = e.info;
              std::string format = b.format_version;
              if (!b.supported_version) format += " (not loadable by this foley)";
              if (!damaged[i].empty())
                format += "; DAMAGED: " + joined(damaged[i], ", ");
              else if (*verify)
                format += ", verified";
              rows.push_back({e.name, b.variant.empty() ? "-" : b.variant,
                              b.has_dit ? dit_summary_text(b.dit) : "-",
                              params_text(b.total_parameters), bytes_text(e.file_bytes),
                              joined(b.networks, ","), format});
            }
            std::vector<size_t> width(rows[0].size(), 0);
            for (const auto& r : rows)
              for (size_t c = 0; c + 1 < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
            for (const auto& r : rows) {
              std::string line;
              for (size_t c = 0; c < r.size(); ++c) {
                line += r[c];
                if (c + 1 < r.size()) line += std::string(width[c] - r[c].size() + 2, ' ');
              }
              std::printf("%s\n", line.c_str());
            }
            return 0;
          }};
}

}  // namespace foley_cli
