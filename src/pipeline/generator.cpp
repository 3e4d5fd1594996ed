// Generator: the networks bound to one backend, the arenas sized for the longest clip, frame
// buffers, warm-up, and decoding into encoder-sized frames.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/check.h"
#include "media/common/sampling.h"
#include "models/text_features.h"
#include "pipeline/pipeline.h"

namespace foley {
namespace pipeline {
namespace {

size_t aligned(size_t bytes) {
  return (bytes + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment;
}

std::unique_ptr<Arena> frozen_arena(Backend& be, size_t bytes) {
  auto arena = std::make_unique<Arena>(be.block_allocator());
  arena->freeze(bytes);
  return arena;
}

// The bytes `reserve` takes from one block, as a device arena would count them (offsets do not
// depend on the device). Host arenas measure it without touching device memory, and their pages
// are never written, so never committed. The first, growing probe also counts the block tails
// it skipped; the second, one block of that size, does not.
template <typename F>
size_t measured_bytes(F&& reserve) {
  Arena growing(host_block_allocator());
  reserve(growing);
  Arena one_block(host_block_allocator(), growing.high_water());
  reserve(one_block);
  return one_block.high_water();
}

}  // namespace

bool side_by_side_encoders() {
  const char* v = std::getenv("FOLEY_SIDE_BY_SIDE_ENCODERS");
  return v && std::string(v) == "1";
}

GeneratorImpl::GeneratorImpl(std::shared_ptr<const ModelImpl> model,
                             const GeneratorOptions& options, std::unique_ptr<Backend> backend)
    : model_(std::move(model)),
      options_(options),
      backend_(std::move(backend)),
      weights_(model_->weights_for(*backend_, options.device_index)) {
  const WeightStore& w = *weights_;
  encoder_be_ = sync_be_ = backend_.get();
  side_by_side_ = options_.overlap_encoders && side_by_side_encoders();
  if (options_.overlap_encoders) {
    // The same device (and so the same device copy of the weights), other streams.
    auto another = [&] {
      std::unique_ptr<Backend> be = backend_->device() == DeviceKind::kCPU
                                        ? make_cpu_backend()
                                        : make_cuda_backend(options.device_index);
      FOLEY_CHECK(be != nullptr, "no second backend for the encoders");
      return be;
    };
    own_encoder_backend_ = another();
    encoder_be_ = sync_be_ = own_encoder_backend_.get();
    if (side_by_side_) {
      own_sync_backend_ = another();
      sync_be_ = own_sync_backend_.get();
    }
  }
  {
    std::lock_guard<std::mutex> lock(model_->construction_mutex());
    siglip_ = std::make_unique<Siglip2Vision>(w, *encoder_be_);
    sync_ = std::make_unique<Synchformer>(w, *sync_be_);
    clap_ = std::make_unique<ClapTextModel>(w, *encoder_be_);
    tokenizer_ = load_clap_tokenizer(w);
    dit_ = std::make_unique<Mmdit>(w, *backend_);
    dac_ = std::make_unique<DacDecoder>(w, *backend_);
  }
  const media::FrameSelector longest(8.0, 25.0, options_.max_clip_seconds);
  max_tv_ = longest.max_semantic();
  max_t25_ = longest.max_sync();
  if (max_t25_ < 16)
    throw make_error(ErrorKind::kInvalidInput,
                     "max_clip_seconds must be at least 0.64 s (16 frames at 25 fps), got %g",
                     options_.max_clip_seconds);
  max_ta_ = clip_timing(max_t25_).latent_frames;
  if (max_ta_ > DacDecoder::kMaxFrames)
    throw make_error(ErrorKind::kInvalidInput,
                     "max_clip_seconds %g is beyond the model's 15 s (%d latent frames)",
                     options_.max_clip_seconds, DacDecoder::kMaxFrames);

  Backend& be = *backend_;
  // The stage arena: one block of the largest stage's need. Encoders run fixed-size chunks of
  // frames, so their workspace does not depend on the clip length (their estimate here, and
  // warm-up measures them in growth mode); CLAP's and the DAC's are measured by reserving their
  // largest inputs; the step is Mmdit's own count.
  const ClapTextConfig& cc = clap_->config();
  const FlowLimits limits = flow_limits();
  stage_needs_.visual = siglip_->workspace_bytes(Siglip2Vision::kDefaultChunk);
  stage_needs_.sync = sync_->workspace_bytes(Synchformer::kDefaultChunk);
  stage_needs_.text = measured_bytes([&](Arena& a) { clap_->reserve(a, 2, cc.max_length()); });
  stage_needs_.step = FlowWorkspace::bytes(*dit_, limits).step;
  stage_needs_.dac = measured_bytes([&](Arena& a) { dac_->reserve(a, max_ta_); });
  stage_arena_ = std::make_unique<Arena>(be.block_allocator(), stage_needs_.largest());
  // Taken once so that the high-water mark covers them (later requests never raise it).
  clap_->reserve(*stage_arena_, 2, cc.max_length());
  dac_->reserve(*stage_arena_, max_ta_);
  text_out_arena_ = frozen_arena(
      *encoder_be_, aligned(size_t{2} * cc.max_length() * cc.hidden_size * sizeof(float)));
  // The sampler's memory at the largest request: CFG batch 2, the longest latent, visual, text
  // and sync sequences; its step activations in the stage arena.
  flow_ = std::make_unique<FlowWorkspace>(*dit_, limits, *stage_arena_);
  const MmditConfig& dc = dit_->config();
  io_arena_ = frozen_arena(be, aligned(size_t(max_ta_) * dc.latent_dim * sizeof(float)) +
                                   aligned(size_t(max_ta_) * dac_->config().hop() * sizeof(float)));

  const int ss = siglip_->config().image_size, sy = sync_->config().image_size;
  semantic_buffer_ = Tensor::empty({max_tv_, ss, ss, 3}, DType::kU8);
  sync_buffer_ = Tensor::empty({max_t25_, sy, sy, 3}, DType::kU8);
}

GeneratorImpl::~GeneratorImpl() = default;

size_t StageArenaNeeds::largest() const {
  return std::max({visual, sync, text, step, dac});
}
size_t StageArenaNeeds::sum() const {
  return visual + sync + text + step + dac;
}

Arena& GeneratorImpl::stage_arena() {
  FOLEY_CHECK(stage_arena_->used() == 0, "the stage arena still holds %zu bytes of another stage",
              stage_arena_->used());
  return *stage_arena_;
}

namespace {

Arena& empty_view(const std::unique_ptr<Arena>& view) {
  FOLEY_CHECK(view->used() == 0, "the encoder region still holds %zu bytes", view->used());
  return *view;
}

}  // namespace

Arena& GeneratorImpl::encoder_arena() {
  return lanes_open_ ? empty_view(encoder_arena_) : stage_arena();
}
Arena& GeneratorImpl::visual_arena() {
  return lanes_open_ ? empty_view(visual_arena_) : stage_arena();
}
Arena& GeneratorImpl::sync_arena() {
  return lanes_open_ ? empty_view(sync_arena_) : stage_arena();
}

size_t GeneratorImpl::encoder_region_bytes() const {
  const size_t visual = aligned(stage_needs_.visual), sync = aligned(stage_needs_.sync);
  return std::max(side_by_side_ ? visual + sync : std::max(visual, sync),
                  aligned(stage_needs_.text));
}

size_t GeneratorImpl::stage_arena_bytes() const {
  const size_t largest = stage_needs_.largest();
  if (!options_.overlap_encoders) return largest;
  return std::max(largest, aligned(stage_needs_.step) + encoder_region_bytes());
}

void GeneratorImpl::freeze_stage_arena() {
  if (stage_arena_->frozen()) return;
  const size_t high = stage_arena_->high_water();
  stage_arena_->freeze(std::max(high, stage_arena_bytes()) - high);
}

void GeneratorImpl::open_lanes() {
  FOLEY_CHECK(options_.overlap_encoders && stage_arena_->frozen() && stage_arena_->used() == 0,
              "open_lanes: the stage arena is not frozen and empty");
  // A step never takes more than Mmdit::step_arena_bytes (a workspace that owns its step arena
  // is frozen at exactly that, and refuses more).
  const size_t offset = aligned(stage_needs_.step);
  const size_t total = stage_arena_->reserved();
  const size_t encoders = encoder_region_bytes();
  FOLEY_CHECK(offset + encoders <= total,
              "open_lanes: %zu bytes of encoder work do not fit beside a step of %zu in %zu",
              encoders, offset, total);
  // The block's base: a frozen arena is one block, handed out from offset 0.
  char* base;
  {
    Arena::Scope scope(*stage_arena_);
    base = static_cast<char*>(stage_arena_->alloc_bytes(total));
  }
  const DeviceKind device = stage_arena_->device();
  const size_t region = total - offset;
  encoder_arena_ = Arena::view(base + offset, region, device);
  if (side_by_side_) {
    const size_t visual = aligned(stage_needs_.visual);
    visual_arena_ = Arena::view(base + offset, visual, device);
    sync_arena_ = Arena::view(base + offset + visual, region - visual, device);
  } else {  // one after another: each takes the whole region in its turn
    visual_arena_ = Arena::view(base + offset, region, device);
    sync_arena_ = Arena::view(base + offset, region, device);
  }
  lanes_open_ = true;
}

void GeneratorImpl::check_step_region() const {
  if (!lanes_open_) return;
  FOLEY_CHECK(stage_arena_->peak() <= aligned(stage_needs_.step),
              "a denoising step took %zu bytes of the stage arena, past its %zu",
              stage_arena_->peak(), aligned(stage_needs_.step));
}

EncoderRegion::Hold::Hold(EncoderRegion& region, Who who) : region_(region) {
  std::unique_lock<std::mutex> lock(region.mutex_);
  if (who == Who::kDac) {
    ++region.dac_waiting_;
    region.changed_.wait(lock, [&] { return !region.held_; });
    --region.dac_waiting_;
  } else {
    region.changed_.wait(lock, [&] { return !region.held_ && region.dac_waiting_ == 0; });
  }
  region.held_ = true;
}

EncoderRegion::Hold::~Hold() {
  {
    std::lock_guard<std::mutex> lock(region_.mutex_);
    region_.held_ = false;
  }
  region_.changed_.notify_all();
}

// Before the lanes open the encoders also take the denoise lane; busy_ is always taken first.
GeneratorImpl::EncoderLane::EncoderLane(GeneratorImpl& g)
    : denoise_(g.lanes_open_ ? std::unique_lock<std::mutex>()
                             : std::unique_lock<std::mutex>(g.busy_)),
      region_(g.region_, EncoderRegion::Who::kEncoders) {}

GeneratorImpl::EncoderLane::~EncoderLane() = default;

FlowLimits GeneratorImpl::flow_limits() const {
  FlowLimits l;
  l.batch = 2 * int64_t{options_.max_batch};
  l.audio_len = max_ta_;
  l.visual_len = max_tv_;
  l.text_len = std::min<int64_t>(clap_->config().max_length(), kTextFeatureLength);
  l.sync_len = int64_t{clip_timing(max_t25_).sync_segments} * sync_->config().num_frames;
  return l;
}

std::string GeneratorImpl::device_name() const {
  return backend_->name();
}

int64_t GeneratorImpl::device_bytes() const {
  if (backend_->device() == DeviceKind::kCPU) return 0;
  // The weights are one device blob per device, shared by the Generators there (the networks
  // use views of it; CLAP's embedding tables and the tokenizer stay host views, see
  // clap_text.h); counted once here. Tensors a network derives at load time (small) are not.
  int64_t bytes = static_cast<int64_t>(weights_->blob_bytes());
  for (const ArenaStat& a : arena_stats()) bytes += static_cast<int64_t>(a.reserved);
  return bytes;
}

Generator::Memory GeneratorImpl::memory() const {
  Memory m;
  m.on_device = backend_->device() != DeviceKind::kCPU;
  m.weights_bytes = static_cast<int64_t>(weights_->blob_bytes());
  for (const ArenaStat& a : arena_stats()) m.work_bytes += static_cast<int64_t>(a.reserved);
  return m;
}

std::vector<ArenaStat> GeneratorImpl::arena_stats() const {
  std::vector<ArenaStat> out;
  auto add = [&](const char* name, const Arena& a) {
    out.push_back({name, a.reserved(), a.high_water(), a.frozen()});
  };
  // The step arena is the stage arena (flow_ borrows it): listed once.
  add("stage", *stage_arena_);
  add("text_out", *text_out_arena_);
  add("flow_inputs", flow_->inputs_arena());
  add("dit_context", flow_->context_arena());
  add("timestep_table", flow_->timestep_arena());
  add("io", *io_arena_);
  return out;
}

ClipFrames GeneratorImpl::synthetic_clip(int tv, int t25) const {
  // Smooth moving gradients: content does not change the work, but it keeps every network in
  // its ordinary numeric range.
  ClipFrames c;
  const int ss = siglip_->config().image_size, sy = sync_->config().image_size;
  c.semantic = Tensor::empty({tv, ss, ss, 3}, DType::kU8);
  c.sync = Tensor::empty({t25, sy, sy, 3}, DType::kU8);
  for (Tensor* t : {&c.semantic, &c.sync}) {
    const int64_t n = t->dim(0), s = t->dim(1);
    uint8_t* p = t->data<uint8_t>();
    for (int64_t f = 0; f < n; ++f)
      for (int64_t y = 0; y < s; ++y)
        for (int64_t x = 0; x < s; ++x)
          for (int64_t ch = 0; ch < 3; ++ch)
            *p++ = static_cast<uint8_t>((x * 255 / s + y * 97 / s + f * 7 + ch * 60) & 0xFF);
  }
  c.timing = clip_timing(t25);
  return c;
}

}  // namespace pipeline

std::unique_ptr<Generator> Generator::create(std::shared_ptr<const Model> model,
                                             const GeneratorOptions& options) {
  auto impl = std::dynamic_pointer_cast<const pipeline::ModelImpl>(model);
  if (!impl) throw Error(ErrorKind::kInvalidInput, "Generator::create: no model loaded");
  if (!std::isfinite(options.max_clip_seconds) || options.max_clip_seconds <= 0 ||
      options.max_clip_seconds > 15.0)
    throw make_error(ErrorKind::kInvalidInput, "max_clip_seconds must be in (0, 15], got %g",
                     options.max_clip_seconds);
  if (!std::isfinite(options.max_video_seconds) || options.max_video_seconds <= 0 ||
      options.max_video_seconds > 7200.0)
    throw make_error(ErrorKind::kInvalidInput, "max_video_seconds must be in (0, 7200], got %g",
                     options.max_video_seconds);
  if (!std::isfinite(options.window_seconds) || options.window_seconds <= 8.0 ||
      options.window_seconds > 15.04)
    throw make_error(ErrorKind::kInvalidInput, "window_seconds must be in (8, 15.04], got %g",
                     options.window_seconds);
  if (options.max_batch < 1 || options.max_batch > 32)
    throw make_error(ErrorKind::kInvalidInput, "max_batch must be in [1, 32], got %d",
                     options.max_batch);
  std::unique_ptr<Backend> backend;
  if (options.device == DeviceType::kCuda) {
    backend = make_cuda_backend(options.device_index);
    if (!backend) throw Error(ErrorKind::kUnsupported, "CUDA not available in this build/machine");
  } else {
    backend = make_cpu_backend();
  }
  return std::make_unique<pipeline::GeneratorImpl>(std::move(impl), options, std::move(backend));
}

}  // namespace foley
