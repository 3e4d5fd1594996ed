// VideoSource over libavformat + libavcodec + libswscale, and probe_video.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "media/common/variant.h"
#include "media/common/video_limits.h"
#include "media/ffmpeg/av_util.h"

extern "C" {
#include <libavutil/pixdesc.h>
}

namespace foley::media {
namespace {

using av::fail;

// The stream as the decode-work estimate should see it: the average frame rate (frames over
// duration) when the container knows it, rather than the guessed rate, which for variable-rate
// phone clips can be the highest instantaneous rate (120 fps for a 30 fps average).
VideoInfo work_estimate_info(const AVStream* st, VideoInfo info) {
  if (st->avg_frame_rate.num > 0 && st->avg_frame_rate.den > 0)
    info.frame_rate = av_q2d(st->avg_frame_rate);
  return info;
}

class FfmpegVideoSource final : public VideoSource {
 public:
  FfmpegVideoSource(const std::string& path, const DecodeOptions& options)
      : options_(options), deadline_(options.limits.max_wall_sec), work_(options.limits) {
    fmt_ = av::open_input(path, options.limits, deadline_);
    stream_ = av::first_video_stream(fmt_.get());
    if (stream_ < 0) throw Error(ErrorKind::kInvalidInput, "'" + path + "' has no video stream");
    info_ = av::describe(fmt_.get(), stream_);
    AVStream* st = fmt_->streams[stream_];
    time_base_ = st->time_base;
    if (time_base_.num <= 0 || time_base_.den <= 0)
      throw Error(ErrorKind::kInvalidInput, "video stream has no valid time base");
    // Size and decode-work limits before any frame is decoded.
    check_video_limits(work_estimate_info(st, info_), options.end_sec, options.limits);
    // Only the chosen stream is demuxed into packets we look at; the rest are discarded early.
    for (unsigned i = 0; i < fmt_->nb_streams; ++i)
      if (int(i) != stream_) fmt_->streams[i]->discard = AVDISCARD_ALL;
    if (options.rotation == Rotation::kHonour) orientation_ = av::stream_orientation(st);
    open_decoder(st);
    packet_ = av::alloc_packet();
    frame_ = av::alloc_frame();
  }

  const VideoInfo& info() const override { return info_; }

  bool next(int64_t* pts, int* tb_num, int* tb_den) override {
    for (;;) {
      deadline_.check();
      av_frame_unref(frame_.get());
      const int got = avcodec_receive_frame(codec_.get(), frame_.get());
      if (got == 0) {
        on_frame();
        *pts = frame_pts();
        *tb_num = time_base_.num;
        *tb_den = time_base_.den;
        return true;
      }
      if (got == AVERROR_EOF) {
        if (width_ == 0 && packets_ > 0) no_frame_decoded();
        return false;
      }
      if (got == AVERROR(EAGAIN)) {
        feed_decoder();
      } else {
        if (first_error_.empty()) first_error_ = av::error_text(got);
        if (++decode_errors_ > kMaxDecodeErrors)
          fail(ErrorKind::kInvalidInput, "video decoding failed", got);
      }
    }
  }

  const uint8_t* rgb(int* width, int* height) override {
    const int w = frame_->width, h = frame_->height;
    const auto format = static_cast<AVPixelFormat>(frame_->format);
    // PyAV's to_ndarray("rgb24") (VideoReformatter.reformat with no interpolation, colourspace
    // or range arguments) calls sws_getCachedContext(w, h, fmt -> w, h, RGB24, SWS_BILINEAR)
    // and leaves swscale's colour details alone: BT.601 coefficients, source range full only for
    // the yuvj* formats. Same-size 4:2:0/4:2:2 input then takes swscale's unscaled yuv2rgb path.
    sws_.reset(sws_getCachedContext(sws_.release(), w, h, format, w, h, AV_PIX_FMT_RGB24,
                                    SWS_BILINEAR, nullptr, nullptr, nullptr));
    if (!sws_)
      throw make_error(ErrorKind::kUnsupported, "cannot convert pixel format %s to RGB",
                       av_get_pix_fmt_name(format) ? av_get_pix_fmt_name(format) : "?");
    if (options_.color == ColorMatrix::kFromFile) set_file_colorspace(format);
    // Convert into an FFmpeg-allocated (aligned, padded) picture: swscale's SIMD paths may write
    // a little past the last pixel of a row.
    if (!rgb_frame_ || rgb_frame_->width != w || rgb_frame_->height != h) {
      rgb_frame_ = av::alloc_frame();
      rgb_frame_->format = AV_PIX_FMT_RGB24;
      rgb_frame_->width = w;
      rgb_frame_->height = h;
      const int err = av_frame_get_buffer(rgb_frame_.get(), 0);
      if (err < 0) fail(ErrorKind::kInternal, "allocating an RGB frame", err);
    }
    sws_scale(sws_.get(), frame_->data, frame_->linesize, 0, h, rgb_frame_->data,
              rgb_frame_->linesize);
    const int ow = orientation_.out_width(w, h), oh = orientation_.out_height(w, h);
    packed_.resize(size_t(ow) * size_t(oh) * 3);
    orient_rgb24(rgb_frame_->data[0], w, h, rgb_frame_->linesize[0], orientation_, packed_.data());
    *width = ow;
    *height = oh;
    return packed_.data();
  }

 private:
  void check_size(int w, int h) const {
    const MediaLimits& l = options_.limits;
    if (w > l.max_width || h > l.max_height)
      throw make_error(ErrorKind::kUnsupported, "resolution %dx%d exceeds the %dx%d limit", w, h,
                       l.max_width, l.max_height);
    if (int64_t(w) * h > l.max_frame_pixels)
      throw make_error(ErrorKind::kInvalidInput,
                       "video frame %dx%d is %.1f megapixels, over the %.1f megapixel limit", w, h,
                       double(int64_t(w) * h) * 1e-6, double(l.max_frame_pixels) * 1e-6);
  }

  void open_decoder(AVStream* st) {
    const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec)
      throw make_error(ErrorKind::kUnsupported, "no decoder for video codec %s",
                       avcodec_get_name(st->codecpar->codec_id));
    codec_.reset(avcodec_alloc_context3(codec));
    if (!codec_) throw std::bad_alloc();
    int err = avcodec_parameters_to_context(codec_.get(), st->codecpar);
    if (err < 0) fail(ErrorKind::kInvalidInput, "bad video codec parameters", err);
    codec_->pkt_timebase = st->time_base;
    // PyAV's thread_type = "AUTO": frame and slice threads. Output is identical either way.
    codec_->thread_count = std::max(options_.decoder_threads, 0);
    codec_->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    // The decoder itself refuses pictures above the limit before allocating them.
    codec_->max_pixels = av::max_frame_pixels(options_.limits);
    err = avcodec_open2(codec_.get(), codec, nullptr);
    if (err < 0)
      fail(ErrorKind::kUnsupported,
           std::string("cannot open the ") + avcodec_get_name(codec->id) + " decoder", err);
  }

  // Sends the next packet of our stream, or the end-of-stream flush once the file is exhausted.
  void feed_decoder() {
    for (;;) {
      if (draining_) fail(ErrorKind::kInternal, "decoder wants input after the flush", 0);
      av_packet_unref(packet_.get());
      const int err = av_read_frame(fmt_.get(), packet_.get());
      if (err < 0) {
        deadline_.check();
        // A read error after some frames is treated as the end of a truncated file; before any
        // frame it means the file is unusable.
        if (err != AVERROR_EOF && packets_ == 0)
          fail(ErrorKind::kInvalidInput, "reading the video failed", err);
        draining_ = true;
        avcodec_send_packet(codec_.get(), nullptr);
        return;
      }
      if (packet_->stream_index != stream_) continue;
      ++packets_;
      const int sent = avcodec_send_packet(codec_.get(), packet_.get());
      if (sent == 0) return;
      if (sent == AVERROR(EAGAIN)) fail(ErrorKind::kInternal, "decoder refused a packet", sent);
      // Like ffmpeg (not PyAV, which raises), a corrupt packet is skipped; a stream that only
      // produces errors is rejected.
      if (first_error_.empty()) first_error_ = av::error_text(sent);
      if (++decode_errors_ > kMaxDecodeErrors)
        fail(ErrorKind::kInvalidInput, "too many corrupt video packets", sent);
    }
  }

  // The stream had packets but the decoder produced no picture from any of them (corrupt payload,
  // a picture above the size cap, ...): say so with the decoder's own words, instead of letting
  // the caller report a clip with 0 frames as too short.
  [[noreturn]] void no_frame_decoded() const {
    std::string why = first_error_;
    if (why.empty()) why = av::error_text(0);
    if (why.empty() || why == "Success") why = "the decoder returned no picture";
    throw make_error(ErrorKind::kInvalidInput,
                     "could not decode any video frame (%s, %lld packets, %d rejected): %s",
                     info_.codec.c_str(), static_cast<long long>(packets_), decode_errors_,
                     why.c_str());
  }

  void on_frame() {
    const int w = frame_->width, h = frame_->height;
    check_size(w, h);
    work_.add(w, h);
    if (w <= 0 || h <= 0 || frame_->format < 0)
      throw Error(ErrorKind::kInvalidInput, "decoded frame has no pixels");
    if (width_ == 0) {
      width_ = w;
      height_ = h;
      first_frame_orientation();
    } else if (w != width_ || h != height_) {
      // The reference stacks all frames into one array and fails on such input too.
      throw make_error(ErrorKind::kUnsupported, "resolution changes mid-stream (%dx%d to %dx%d)",
                       width_, height_, w, h);
    }
  }

  // A display matrix carried by frames (e.g. an H.264 display-orientation SEI) when the
  // container has none.
  void first_frame_orientation() {
    if (options_.rotation != Rotation::kHonour || !orientation_.identity()) return;
    if (av_stream_get_side_data(fmt_->streams[stream_], AV_PKT_DATA_DISPLAYMATRIX, nullptr)) return;
    const AVFrameSideData* sd = av_frame_get_side_data(frame_.get(), AV_FRAME_DATA_DISPLAYMATRIX);
    if (!sd || sd->size < 9 * sizeof(int32_t)) return;
    int32_t m[9];
    std::memcpy(m, sd->data, sizeof m);
    orientation_ = orientation_from_display_matrix(m);
    info_.rotation_cw = orientation_.rotation_cw();
    info_.mirrored = orientation_.mirrored();
  }

  // best_effort_timestamp equals pts for well-formed files and still exists when the container
  // stores only dts (AVI, raw streams). Frames without any timestamp continue from the last one.
  int64_t frame_pts() {
    int64_t ts = frame_->best_effort_timestamp;
    if (ts == AV_NOPTS_VALUE) ts = frame_->pts;
    if (ts == AV_NOPTS_VALUE) ts = have_last_ ? last_pts_ + std::max<int64_t>(last_step_, 1) : 0;
    if (have_last_ && ts > last_pts_) last_step_ = ts - last_pts_;
    last_pts_ = ts;
    have_last_ = true;
    return ts;
  }

  void set_file_colorspace(AVPixelFormat format) {
    const AVPixFmtDescriptor* d = av_pix_fmt_desc_get(format);
    if (!d || (d->flags & AV_PIX_FMT_FLAG_RGB)) return;
    const bool jpeg_fmt = format == AV_PIX_FMT_YUVJ420P || format == AV_PIX_FMT_YUVJ422P ||
                          format == AV_PIX_FMT_YUVJ444P || format == AV_PIX_FMT_YUVJ440P ||
                          format == AV_PIX_FMT_YUVJ411P;
    const int src_full = jpeg_fmt || frame_->color_range == AVCOL_RANGE_JPEG;
    int cs = frame_->colorspace;
    if (cs == AVCOL_SPC_UNSPECIFIED || cs == AVCOL_SPC_RGB || cs > AVCOL_SPC_BT2020_CL)
      cs = SWS_CS_DEFAULT;
    sws_setColorspaceDetails(sws_.get(), sws_getCoefficients(cs), src_full,
                             sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
  }

  static constexpr int kMaxDecodeErrors = 100;

  DecodeOptions options_;
  av::Deadline deadline_;
  DecodeWorkCounter work_;
  av::InputPtr fmt_;
  av::CodecPtr codec_;
  av::PacketPtr packet_;
  av::FramePtr frame_, rgb_frame_;
  av::SwsPtr sws_;
  int stream_ = -1;
  AVRational time_base_{0, 1};
  VideoInfo info_;
  Orientation orientation_;
  std::vector<uint8_t> packed_;
  int width_ = 0, height_ = 0;
  int64_t packets_ = 0;
  int decode_errors_ = 0;
  // The decoder's first complaint (usually the cause; later ones tend to be consequences such as
  // "cannot decode frame without keyframe"), for no_frame_decoded().
  std::string first_error_;
  bool draining_ = false;
  int64_t last_pts_ = 0, last_step_ = 1;
  bool have_last_ = false;
};

}  // namespace

std::unique_ptr<VideoSource> open_video_source(const std::string& path,
                                               const DecodeOptions& options) {
  return std::make_unique<FfmpegVideoSource>(path, options);
}

}  // namespace foley::media

namespace foley {

VideoInfo probe_video(const std::string& path, const MediaLimits& limits) {
  media::av::Deadline deadline(limits.max_wall_sec);
  media::av::InputPtr ctx = media::av::open_input(path, limits, deadline);
  const int stream = media::av::first_video_stream(ctx.get());
  if (stream < 0) throw Error(ErrorKind::kInvalidInput, "'" + path + "' has no video stream");
  VideoInfo info = media::av::describe(ctx.get(), stream);
  // Stream analysis decodes a first picture to learn its size, under the decoders' pixel cap; a
  // stream still without one could not be decoded (or declared a picture above the cap).
  if (info.width <= 0 || info.height <= 0) {
    const std::string why = media::av::first_logged_error();
    throw Error(ErrorKind::kInvalidInput, "cannot determine the video's picture size" +
                                              (why.empty() ? std::string() : ": " + why));
  }
  check_video_limits(media::work_estimate_info(ctx->streams[stream], info),
                     DecodeOptions().end_sec, limits);
  return info;
}

bool media_has_ffmpeg() {
  return true;
}

}  // namespace foley
