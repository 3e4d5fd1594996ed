// Each subcommand registers itself on the CLI app and returns the action to run when chosen.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

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

}  // namespace foley_cli
