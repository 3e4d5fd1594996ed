// `--model NAME=BUNDLE` (or a plain `--model BUNDLE`, named after the file's stem) as `foley
// serve` and `foley worker` take it, and the rule for model names: they appear in request
// fields, URLs (/v1/models/{name}/load) and metric labels, so they are short and plain.
#pragma once

#include <string>
#include <vector>

#include "foley/registry.h"

namespace foley_server {

// 1 to 64 characters of [A-Za-z0-9._-], not starting with '.' or '-'.
bool is_valid_model_name(const std::string& name);

// One `--model` value: "NAME=BUNDLE", or "BUNDLE" (an existing file, or anything without a
// valid NAME= prefix) named after its stem ("default" when the stem is not a valid name).
// Throws foley::Error (kInvalidInput) for an empty bundle or an invalid name.
foley::RegistryModel parse_model_spec(const std::string& spec);

// Every value, in order; throws kInvalidInput when two share a name.
std::vector<foley::RegistryModel> parse_model_specs(const std::vector<std::string>& specs);

}  // namespace foley_server
