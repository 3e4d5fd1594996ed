// The public API of the foley library. Tools (CLI, server) include only headers under foley/.
#pragma once

#include "foley/error.h"
#include "foley/weights.h"

namespace foley {

const char* version();

}  // namespace foley
