// PLACEHOLDER being replaced by the weight-file work.
#include "foley/error.h"
#include "foley/weights.h"

namespace foley {

FileListing inspect_weights_file(const std::string& path) {
  throw Error(ErrorKind::kUnsupported, path + ": inspect not implemented yet");
}

}  // namespace foley
