// Small RAII and safety helpers around the FFmpeg C API, shared by the decoder, the audio
// encoder and the muxer.
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/frame.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
}

#include <chrono>
#include <memory>
#include <string>

#include "foley/media.h"
#include "media/common/image.h"

namespace foley::media::av {

// ---- owners ---------------------------------------------------------------------------------

struct InputCloser {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
using InputPtr = std::unique_ptr<AVFormatContext, InputCloser>;

// An output context owns the AVIOContext it opened (never a custom one).
struct OutputFreer {
  void operator()(AVFormatContext* c) const {
    if (c->pb && !(c->flags & AVFMT_FLAG_CUSTOM_IO)) avio_closep(&c->pb);
    avformat_free_context(c);
  }
};
using OutputPtr = std::unique_ptr<AVFormatContext, OutputFreer>;

struct CodecFreer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;

struct FrameFreer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;

struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;

struct SwsFreer {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
using SwsPtr = std::unique_ptr<SwsContext, SwsFreer>;

struct SwrFreer {
  void operator()(SwrContext* s) const { swr_free(&s); }
};
using SwrPtr = std::unique_ptr<SwrContext, SwrFreer>;

FramePtr alloc_frame();
PacketPtr alloc_packet();

class Dict {
 public:
  Dict() = default;
  ~Dict() { av_dict_free(&d_); }
  Dict(const Dict&) = delete;
  Dict& operator=(const Dict&) = delete;
  Dict& set(const char* key, const std::string& value);
  AVDictionary** ptr() { return &d_; }

 private:
  AVDictionary* d_ = nullptr;
};

// ---- errors, logging, time ------------------------------------------------------------------

// Routes FFmpeg's log to a per-thread "last message" instead of stderr (once per process).
// FOLEY_FFMPEG_LOG=<level> (e.g. "warning", "debug") prints it to stderr as well, for debugging.
void quiet_logging();
// Forgets the last logged message of this thread (call at the start of an operation).
void clear_last_log();

// The first FFmpeg error logged on this thread since clear_last_log() ("" if none): the cause,
// where later errors are its consequences.
std::string first_logged_error();

// The last FFmpeg error logged on this thread, else the text of `err` (for messages).
std::string error_text(int err);

// Throws Error(kind, "<what>: <last FFmpeg error logged on this thread, else the error text>").
[[noreturn]] void fail(ErrorKind kind, const std::string& what, int err);

// A wall-clock budget. FFmpeg polls callback() during blocking I/O and gives up once expired.
class Deadline {
 public:
  explicit Deadline(double seconds);
  bool expired() const { return std::chrono::steady_clock::now() > end_; }
  // Throws kUnsupported naming the limit if the budget is spent.
  void check() const;
  AVIOInterruptCB callback() const { return {&Deadline::poll, const_cast<Deadline*>(this)}; }

 private:
  static int poll(void* self);
  std::chrono::steady_clock::time_point end_;
  double seconds_;
};

// ---- safe input -----------------------------------------------------------------------------

// Opens an untrusted local file: regular files only, `file` protocol only, container formats
// from an allow-list, probing and stream analysis capped, duration capped, deadline enforced.
InputPtr open_input(const std::string& path, const MediaLimits& limits, const Deadline& deadline);

// The largest picture (width·height) decoders may allocate under `limits`: what they get as
// "max_pixels", so an oversized frame is refused before its buffer exists.
int64_t max_frame_pixels(const MediaLimits& limits);

// The first video stream in file order (what PyAV's streams.video[0] picks), skipping cover art;
// -1 if there is none.
int first_video_stream(const AVFormatContext* ctx);

// The stream's display matrix as an orientation (identity if none).
Orientation stream_orientation(const AVStream* st);

// Container and stream facts for a video stream.
VideoInfo describe(const AVFormatContext* ctx, int video_stream);

// Seconds of `ts` in `tb` (for limits and durations; the sampling uses exact rationals).
inline double seconds(int64_t ts, AVRational tb) {
  return double(ts) * av_q2d(tb);
}

}  // namespace foley::media::av
