#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "commands.h"
#include "foley/foley.h"

namespace {

// libgomp's worker threads spin for a while after each parallel region. With several generators
// (server workers) or other processes on the same cores, the spinning threads steal the cores the
// working threads need: measured on a loaded 2-core box, the tiny model's warm-up took 11 s with
// spinning and 0.5 s without. libgomp reads OMP_WAIT_POLICY once, when it is loaded, so the only
// way to default it is to set it and re-execute; a value the user set is left alone.
void default_to_passive_openmp_waits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run with libgomp's default
}

}  // namespace

int main(int argc, char** argv) {
  default_to_passive_openmp_waits(argv);
  CLI::App app{"foley: video + text -> matching sound effects (HunyuanVideo-Foley)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("foley ") + foley::version());
  const std::vector<foley_cli::Command> commands = {
      foley_cli::add_inspect_command(app),
      foley_cli::add_convert_command(app),
      foley_cli::add_models_command(app),
      foley_cli::add_golden_command(app),
      foley_cli::add_generate_command(app),
      foley_cli::add_serve_command(app),
      foley_cli::add_worker_command(app),
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
