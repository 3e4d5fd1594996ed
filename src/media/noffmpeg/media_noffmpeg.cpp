// The media variant for builds without FFmpeg: Y4M video in, WAV audio in and out, no muxing.
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "media/common/variant.h"
#include "media/common/video_limits.h"
#include "media/common/wav.h"
#include "media/common/y4m.h"

namespace foley::media {
namespace {

[[noreturn]] void no_ffmpeg(const std::string& what) {
  throw Error(ErrorKind::kUnsupported, what + ": built without FFmpeg");
}

void require_y4m(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    throw make_error(errno == ENOENT ? ErrorKind::kNotFound : ErrorKind::kInvalidInput,
                     "cannot open '%s': %s", path.c_str(), std::strerror(errno));
  std::fclose(f);
  if (!is_y4m_file(path))
    no_ffmpeg("'" + path + "' is not a Y4M (YUV4MPEG2) file, the only video input");
}

// Frames are fixed-size, so the file size gives the duration (used to size the stacks and to
// estimate the decode work).
VideoInfo describe(const Y4mHeader& h, const std::string& path) {
  VideoInfo info;
  info.container = "yuv4mpegpipe";
  info.codec = "rawvideo";
  info.width = h.width;
  info.height = h.height;
  info.frame_rate = double(h.fps_num) / h.fps_den;
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && h.frame_bytes > 0)
    info.duration_sec = double(st.st_size) / double(h.frame_bytes + 6) / info.frame_rate;
  return info;
}

// Frames are stored uncompressed; frame i has pts i in time base F_den / F_num, as FFmpeg's
// y4m demuxer reports them.
class Y4mVideoSource final : public VideoSource {
 public:
  Y4mVideoSource(const std::string& path, const DecodeOptions& options)
      : reader_(path, options.limits), options_(options), work_(options.limits) {
    info_ = describe(reader_.header(), path);
    check_video_limits(info_, options.end_sec, options.limits);
  }

  const VideoInfo& info() const override { return info_; }

  bool next(int64_t* pts, int* tb_num, int* tb_den) override {
    if (!reader_.next_frame(planes_)) return false;
    work_.add(reader_.header().width, reader_.header().height);
    *pts = index_++;
    *tb_num = reader_.header().fps_den;
    *tb_den = reader_.header().fps_num;
    return true;
  }

  const uint8_t* rgb(int* width, int* height) override {
    const Y4mHeader& h = reader_.header();
    rgb_.resize(size_t(h.width) * size_t(h.height) * 3);
    // kReference ignores the range tag like PyAV does (FFmpeg reads Y4M as plain yuv420p etc.).
    const bool full = options_.color == ColorMatrix::kFromFile && h.full_range;
    yuv_to_rgb24(reader_.plane(planes_, 0), reader_.plane(planes_, 1), reader_.plane(planes_, 2),
                 h.width, h.height, h.chroma, full, rgb_.data());
    *width = h.width;
    *height = h.height;
    return rgb_.data();
  }

 private:
  Y4mReader reader_;
  DecodeOptions options_;
  VideoInfo info_;
  DecodeWorkCounter work_;
  std::vector<uint8_t> planes_, rgb_;
  int64_t index_ = 0;
};

}  // namespace

std::unique_ptr<VideoSource> open_video_source(const std::string& path,
                                               const DecodeOptions& options) {
  require_y4m(path);
  return std::make_unique<Y4mVideoSource>(path, options);
}

void write_flac(const std::string&, const float*, size_t, int, int, int) {
  no_ffmpeg("FLAC output");
}

}  // namespace foley::media

namespace foley {

VideoInfo probe_video(const std::string& path, const MediaLimits& limits) {
  media::require_y4m(path);
  VideoInfo info = media::describe(media::Y4mReader(path, limits).header(), path);
  check_video_limits(info, DecodeOptions().end_sec, limits);
  return info;
}

AudioData read_audio(const std::string& path, const MediaLimits& limits) {
  return media::read_wav_file(path, limits);
}

void mux_audio(const std::string&, const float*, size_t, int, const std::string&,
               const MuxOptions&) {
  media::no_ffmpeg("muxing audio into video");
}

bool media_has_ffmpeg() {
  return false;
}

}  // namespace foley
