#include "model_specs.h"

#include <filesystem>

namespace foley_server {

bool is_valid_model_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

foley::RegistryModel parse_model_spec(const std::string& spec) {
  namespace fs = std::filesystem;
  foley::RegistryModel m;
  const size_t eq = spec.find('=');
  std::error_code ec;
  // A file that exists under the whole value is a plain path, even with a '=' in it.
  const bool named = eq != std::string::npos && !fs::exists(spec, ec);
  if (named) {
    m.name = spec.substr(0, eq);
    m.bundle_path = spec.substr(eq + 1);
    if (!is_valid_model_name(m.name))
      throw foley::Error(foley::ErrorKind::kInvalidInput,
                         "--model " + spec + ": the name \"" + m.name +
                             "\" must be 1 to 64 characters of letters, digits, '.', '_' or '-'");
  } else {
    m.bundle_path = spec;
    m.name = fs::path(spec).stem().string();
    if (!is_valid_model_name(m.name)) m.name = "default";
  }
  if (m.bundle_path.empty())
    throw foley::Error(foley::ErrorKind::kInvalidInput, "--model " + spec + ": no bundle given");
  return m;
}

std::vector<foley::RegistryModel> parse_model_specs(const std::vector<std::string>& specs) {
  std::vector<foley::RegistryModel> out;
  for (const auto& s : specs) {
    foley::RegistryModel m = parse_model_spec(s);
    for (const auto& o : out)
      if (o.name == m.name)
        throw foley::Error(foley::ErrorKind::kInvalidInput,
                           "--model: two models are named \"" + m.name +
                               "\" (name them: --model NAME=BUNDLE)");
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace foley_server
