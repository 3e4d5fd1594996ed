#include "foley/foley.h"

namespace foley {

const char* version() { return FOLEY_VERSION; }

}  // namespace foley
