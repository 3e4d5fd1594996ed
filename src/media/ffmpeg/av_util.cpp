#include "media/ffmpeg/av_util.h"

extern "C" {
#include <libavutil/display.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
}

#include <sys/stat.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/check.h"

namespace foley::media::av {
namespace {

thread_local std::string t_last_log;
thread_local std::string t_first_log;  // the first error since clear_last_log()
int g_print_level = AV_LOG_QUIET - 1;  // set once in quiet_logging(), read-only afterwards

void log_callback(void* avcl, int level, const char* fmt, va_list args) {
  if (level > AV_LOG_ERROR && level > g_print_level) return;
  char line[1024];
  if (level <= g_print_level) {  // debugging: the full line, with FFmpeg's "[context @ ptr]"
    va_list copy;
    va_copy(copy, args);
    int print_prefix = 1;
    av_log_format_line2(avcl, level, fmt, copy, line, sizeof line, &print_prefix);
    va_end(copy);
    std::fprintf(stderr, "ffmpeg: %s", line);
  }
  // For error messages: the text alone, one line.
  std::vsnprintf(line, sizeof line, fmt, args);
  std::string s = line;
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  if (level <= AV_LOG_ERROR && !s.empty()) {
    t_last_log = s;
    if (t_first_log.empty()) t_first_log = s;
  }
}

// Demuxers that read only the file they are given. Everything that opens further URLs or files
// (hls, dash, concat, tee, image2 sequences, playlists, ...) is left out.
constexpr const char* kAllowedDemuxers[] = {"mov,mp4,m4a,3gp,3g2,mj2",
                                            "matroska,webm",
                                            "avi",
                                            "flv",
                                            "mpegts",
                                            "mpeg",
                                            "mpegvideo",
                                            "m4v",
                                            "h264",
                                            "hevc",
                                            "h263",
                                            "vc1",
                                            "av1",
                                            "obu",
                                            "ivf",
                                            "ogg",
                                            "asf",
                                            "nut",
                                            "dv",
                                            "mxf",
                                            "rm",
                                            "gif",
                                            "apng",
                                            "yuv4mpegpipe",
                                            "mjpeg",
                                            "wav",
                                            "w64",
                                            "mp3",
                                            "flac",
                                            "aac",
                                            "aiff",
                                            "caf"};

std::string allowed_list() {
  std::string s;
  for (const char* name : kAllowedDemuxers) s += std::string(s.empty() ? "" : ",") + name;
  return s;
}

bool allowed(const char* name) {
  for (const char* a : kAllowedDemuxers)
    if (std::strcmp(a, name) == 0) return true;
  return false;
}

// Probes the container the way avformat_open_input would, to refuse disallowed formats with a
// clear message before any demuxer runs.
const AVInputFormat* probe_format(const std::string& path, const MediaLimits& limits,
                                  const Deadline& deadline) {
  AVIOInterruptCB cb = deadline.callback();
  Dict opts;
  opts.set("protocol_whitelist", "file");
  AVIOContext* pb = nullptr;
  int err = avio_open2(&pb, ("file:" + path).c_str(), AVIO_FLAG_READ, &cb, opts.ptr());
  if (err < 0) fail(ErrorKind::kInvalidInput, "cannot open '" + path + "'", err);
  const AVInputFormat* fmt = nullptr;
  err =
      av_probe_input_buffer2(pb, &fmt, path.c_str(), nullptr, 0,
                             static_cast<unsigned>(std::min<int64_t>(limits.probe_bytes, 1 << 30)));
  avio_closep(&pb);
  if (err < 0 || !fmt) {
    deadline.check();
    fail(ErrorKind::kInvalidInput, "'" + path + "' is not a recognised media file", err);
  }
  return fmt;
}

}  // namespace

FramePtr alloc_frame() {
  FramePtr f(av_frame_alloc());
  if (!f) throw std::bad_alloc();
  return f;
}

PacketPtr alloc_packet() {
  PacketPtr p(av_packet_alloc());
  if (!p) throw std::bad_alloc();
  return p;
}

Dict& Dict::set(const char* key, const std::string& value) {
  if (av_dict_set(&d_, key, value.c_str(), 0) < 0) throw std::bad_alloc();
  return *this;
}

void quiet_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (const char* env = std::getenv("FOLEY_FFMPEG_LOG")) {
      static const std::pair<const char*, int> kLevels[] = {{"error", AV_LOG_ERROR},
                                                            {"warning", AV_LOG_WARNING},
                                                            {"info", AV_LOG_INFO},
                                                            {"verbose", AV_LOG_VERBOSE},
                                                            {"debug", AV_LOG_DEBUG}};
      for (auto [name, level] : kLevels)
        if (std::strcmp(env, name) == 0) g_print_level = level;
    }
    av_log_set_level(std::max(AV_LOG_ERROR, g_print_level));
    av_log_set_callback(log_callback);
  });
}

void clear_last_log() {
  t_last_log.clear();
  t_first_log.clear();
}

std::string first_logged_error() {
  return t_first_log;
}

std::string error_text(int err) {
  if (!t_last_log.empty()) return t_last_log;
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

void fail(ErrorKind kind, const std::string& what, int err) {
  // FFmpeg's last logged error is usually the specific cause ("moov atom not found"); the error
  // code is generic and sometimes misleading (EBUSY for a bad picture size), so it is the
  // fallback.
  std::string msg = what;
  if (!t_last_log.empty()) {
    msg += ": " + t_last_log;
  } else if (err < 0) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(err, buf, sizeof buf);
    msg += std::string(": ") + buf;
  }
  throw Error(kind, msg);
}

Deadline::Deadline(double seconds)
    : end_(std::chrono::steady_clock::now() +
           std::chrono::duration_cast<std::chrono::steady_clock::duration>(
               std::chrono::duration<double>(std::min(seconds, 1e7)))),
      seconds_(seconds) {}

void Deadline::check() const {
  if (expired())
    throw make_error(ErrorKind::kUnsupported, "media processing exceeded the %g s time limit",
                     seconds_);
}

int Deadline::poll(void* self) {
  return static_cast<Deadline*>(self)->expired() ? 1 : 0;
}

InputPtr open_input(const std::string& path, const MediaLimits& limits, const Deadline& deadline) {
  quiet_logging();
  clear_last_log();
  struct stat st {};
  if (stat(path.c_str(), &st) != 0)
    throw make_error(errno == ENOENT ? ErrorKind::kNotFound : ErrorKind::kInvalidInput,
                     "cannot open '%s': %s", path.c_str(), std::strerror(errno));
  // FIFOs, devices and directories could block forever or are not media.
  if (!S_ISREG(st.st_mode))
    throw Error(ErrorKind::kInvalidInput, "'" + path + "' is not a regular file");
  if (st.st_size == 0) throw Error(ErrorKind::kInvalidInput, "'" + path + "' is empty");

  const AVInputFormat* fmt = probe_format(path, limits, deadline);
  if (!allowed(fmt->name))
    throw make_error(ErrorKind::kUnsupported, "container format '%s' is not allowed", fmt->name);

  AVFormatContext* raw = avformat_alloc_context();
  if (!raw) throw std::bad_alloc();
  raw->interrupt_callback = deadline.callback();
  Dict opts;
  opts.set("protocol_whitelist", "file")
      .set("format_whitelist", allowed_list())
      .set("probesize", std::to_string(std::max<int64_t>(limits.probe_bytes, 32)))
      .set("analyzeduration", std::to_string(std::max<int64_t>(limits.analyze_duration_us, 0)))
      .set("max_streams", "64");
  // On failure avformat_open_input frees the context itself.
  const int err = avformat_open_input(&raw, ("file:" + path).c_str(), fmt, opts.ptr());
  if (err < 0) {
    deadline.check();
    fail(ErrorKind::kInvalidInput, "cannot open '" + path + "'", err);
  }
  InputPtr ctx(raw);
  // Stream analysis may decode frames: with the decoders' picture-size cap, so that a header that
  // declares a huge canvas costs nothing here (the size is refused right after, from the header).
  std::vector<Dict> stream_opts(ctx->nb_streams);
  std::vector<AVDictionary*> stream_dicts(ctx->nb_streams);
  for (unsigned i = 0; i < ctx->nb_streams; ++i) {
    stream_opts[i].set("max_pixels", std::to_string(max_frame_pixels(limits)));
    stream_dicts[i] = *stream_opts[i].ptr();
  }
  const int info =
      avformat_find_stream_info(ctx.get(), stream_dicts.empty() ? nullptr : stream_dicts.data());
  // find_stream_info may consume entries and hand back the unused ones in the same slots.
  for (unsigned i = 0; i < ctx->nb_streams && i < stream_dicts.size(); ++i)
    *stream_opts[i].ptr() = stream_dicts[i];
  deadline.check();
  if (info < 0) fail(ErrorKind::kInvalidInput, "cannot read streams of '" + path + "'", info);
  if (ctx->duration != AV_NOPTS_VALUE && ctx->duration > 0) {
    const double dur = double(ctx->duration) / AV_TIME_BASE;
    if (dur > limits.max_duration_sec)
      throw make_error(ErrorKind::kUnsupported, "duration %.0f s exceeds the %.0f s limit", dur,
                       limits.max_duration_sec);
  }
  return ctx;
}

int64_t max_frame_pixels(const MediaLimits& limits) {
  const int64_t by_side = int64_t(std::max(limits.max_width, 1)) * std::max(limits.max_height, 1);
  return std::max<int64_t>(1, std::min(by_side, limits.max_frame_pixels));
}

int first_video_stream(const AVFormatContext* ctx) {
  for (unsigned i = 0; i < ctx->nb_streams; ++i) {
    const AVStream* st = ctx->streams[i];
    if (st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
        !(st->disposition & AV_DISPOSITION_ATTACHED_PIC))
      return int(i);
  }
  return -1;
}

Orientation stream_orientation(const AVStream* st) {
  size_t size = 0;
  const uint8_t* m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, &size);
  if (!m || size < 9 * sizeof(int32_t)) return {};
  int32_t matrix[9];
  std::memcpy(matrix, m, sizeof matrix);
  return orientation_from_display_matrix(matrix);
}

VideoInfo describe(const AVFormatContext* ctx, int video_stream) {
  VideoInfo info;
  info.container = ctx->iformat ? ctx->iformat->name : "";
  for (unsigned i = 0; i < ctx->nb_streams; ++i)
    if (ctx->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO) info.has_audio = true;
  if (video_stream < 0) return info;
  AVStream* st = ctx->streams[video_stream];
  info.codec = avcodec_get_name(st->codecpar->codec_id);
  info.width = st->codecpar->width;
  info.height = st->codecpar->height;
  const Orientation o = stream_orientation(st);
  info.rotation_cw = o.rotation_cw();
  info.mirrored = o.mirrored();
  const AVRational rate = av_guess_frame_rate(const_cast<AVFormatContext*>(ctx), st, nullptr);
  if (rate.num > 0 && rate.den > 0) info.frame_rate = av_q2d(rate);
  if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
    info.duration_sec = seconds(st->duration, st->time_base);
  else if (ctx->duration != AV_NOPTS_VALUE && ctx->duration > 0)
    info.duration_sec = double(ctx->duration) / AV_TIME_BASE;
  if (st->start_time != AV_NOPTS_VALUE) info.start_sec = seconds(st->start_time, st->time_base);
  return info;
}

}  // namespace foley::media::av
