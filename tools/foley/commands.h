// Each subcommand registers itself on the CLI app and returns the action to run when chosen.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace foley {
struct DitSummary;
enum class Precision;
}

namespace foley_cli {

using Action = std::function<int()>;
struct Command {
  CLI::App* cli;
  Action run;
};

Command add_inspect_command(CLI::App& app);
Command add_convert_command(CLI::App& app);
Command add_golden_command(CLI::App& app);
Command add_generate_command(CLI::App& app);
Command add_serve_command(CLI::App& app);
Command add_worker_command(CLI::App& app);
Command add_models_command(CLI::App& app);

// --precision exact|fast (GeneratorOptions::precision), for the commands that create generators.
void add_precision_option(CLI::App* cmd, std::string* precision);
foley::Precision precision_of(const std::string& name);

// "hidden 1536, 12 heads, 18+36 blocks, BF16" (cmd_models.cpp; inspect shows it too).
std::string dit_summary_text(const foley::DitSummary& d);

}  // namespace foley_cli
