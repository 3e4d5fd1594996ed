// Golden-case stage of the semantic branch: "siglip2" (frames8_rgb -> preprocessed pixels of the
// first two frames and the per-frame pooled features).
#include <algorithm>
#include <vector>

#include "api/golden.h"
#include "core/check.h"
#include "image/resize.h"
#include "models/siglip2_vision.h"

namespace foley::golden {
namespace {

std::vector<StageOutput> run_siglip2(const StageContext& ctx) {
  const Siglip2Vision model(ctx.weights, ctx.backend);
  const Tensor frames = ctx.gcase.tensor("frames8_rgb");
  if (frames.rank() != 4 || frames.dim(3) != 3 || frames.dtype() != DType::kU8)
    throw Error(ErrorKind::kInvalidInput,
                "frames8_rgb must be U8 [Tv, H, W, 3], got " + frames.describe());
  const int64_t size = model.config().image_size;
  // The pixels are checked separately so a preprocessing error is not mistaken for a model one.
  const int64_t first = std::min<int64_t>(2, frames.dim(0));
  Tensor pixels = Tensor::empty({first, 3, size, size}, DType::kF32);
  for (int64_t i = 0; i < first; ++i)
    siglip2_preprocess(frames.select(0, i), static_cast<int>(size),
                       pixels.data<float>() + i * 3 * size * size);
  Arena arena(ctx.backend.block_allocator(), model.workspace_bytes(Siglip2Vision::kDefaultChunk));
  const Tensor features = model.encode_frames(frames, arena);
  return {{"siglip2_pixels_first2", pixels}, {"siglip2_features", features}};
}

}  // namespace

void register_siglip2_stages(std::vector<Stage>& stages) {
  stages.push_back({"siglip2", {"siglip2"}, run_siglip2});
}

}  // namespace foley::golden
