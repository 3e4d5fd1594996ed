// PLACEHOLDER being replaced by the DiT work: registers no stages yet, so the golden runner
// reports "dit" and "sample" as not implemented. Replace this file wholesale.
#include "api/golden.h"

namespace foley::golden {

void register_dit_stages(std::vector<Stage>&) {}

}  // namespace foley::golden
