#include <cstdio>
#include <vector>

#include "commands.h"
#include "foley/foley.h"

int main(int argc, char** argv) {
  CLI::App app{"foley: video + text -> matching sound effects (HunyuanVideo-Foley)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("foley ") + foley::version());
  const std::vector<foley_cli::Command> commands = {
      foley_cli::add_inspect_command(app),
      foley_cli::add_convert_command(app),
      foley_cli::add_golden_command(app),
      foley_cli::add_generate_command(app),
      foley_cli::add_serve_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (const auto& command : commands) {
    if (!command.cli->parsed()) continue;
    try {
      return command.run();
    } catch (const foley::Error& e) {
      std::fprintf(stderr, "foley: %s\n", e.what());
      return e.kind() == foley::ErrorKind::kInternal ? 3 : 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "foley: internal error: %s\n", e.what());
      return 3;
    }
  }
  return 1;
}
