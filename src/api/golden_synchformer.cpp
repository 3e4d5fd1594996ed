// Golden-case stage of the sync branch: "synchformer" (frames25_rgb -> preprocessed pixels of the
// first two frames and the windowed per-segment features).
#include <algorithm>
#include <vector>

#include "api/golden.h"
#include "core/check.h"
#include "image/resize.h"
#include "models/synchformer.h"

namespace foley::golden {
namespace {

std::vector<StageOutput> run_synchformer(const StageContext& ctx) {
  const Synchformer model(ctx.weights, ctx.backend);
  const Tensor frames = ctx.gcase.tensor("frames25_rgb");
  if (frames.rank() != 4 || frames.dim(3) != 3 || frames.dtype() != DType::kU8)
    throw Error(ErrorKind::kInvalidInput,
                "frames25_rgb must be U8 [T25, H, W, 3], got " + frames.describe());
  const int64_t size = model.config().image_size;
  // The pixels are checked separately so a preprocessing error is not mistaken for a model one.
  const int64_t first = std::min<int64_t>(2, frames.dim(0));
  Tensor pixels = Tensor::empty({first, 3, size, size}, DType::kF32);
  for (int64_t i = 0; i < first; ++i)
    synchformer_preprocess(frames.select(0, i), static_cast<int>(size),
                           pixels.data<float>() + i * 3 * size * size);
  Arena arena(ctx.backend.block_allocator(), model.workspace_bytes(Synchformer::kDefaultChunk));
  const Tensor features = model.encode_frames(frames, arena);
  return {{"sync_pixels_first2", pixels}, {"sync_features", features}};
}

}  // namespace

void register_synchformer_stages(std::vector<Stage>& stages) {
  stages.push_back({"synchformer", {"synchformer"}, run_synchformer});
}

}  // namespace foley::golden
