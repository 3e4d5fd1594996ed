// mux_audio: the input's video stream copied packet for packet, the generated audio encoded next
// to it, written atomically.
#include <cstring>
#include <vector>

#include "core/check.h"
#include "media/common/atomic_file.h"
#include "media/ffmpeg/audio_codec.h"
#include "media/ffmpeg/av_util.h"

extern "C" {
#include <libavutil/avstring.h>
#include <libavutil/opt.h>
}

namespace foley {
namespace {

using media::av::fail;
namespace av = media::av;

constexpr int kOutRate = 48000;

bool is_mp4_family(const AVOutputFormat* f) {
  return !std::strcmp(f->name, "mp4") || !std::strcmp(f->name, "mov") ||
         !std::strcmp(f->name, "ipod");
}

const AVOutputFormat* output_format_for(const std::string& path) {
  const AVOutputFormat* f = av_guess_format(nullptr, path.c_str(), nullptr);
  for (const char* ok : {"mp4", "mov", "ipod", "matroska", "webm"})
    if (f && !std::strcmp(f->name, ok)) return f;
  throw Error(ErrorKind::kUnsupported, "cannot tell the output container from '" + path +
                                           "' (use .mp4 .mov .m4v .mkv .webm)");
}

AVCodecID codec_id(MuxAudioCodec c) {
  switch (c) {
    case MuxAudioCodec::kAac:
      return AV_CODEC_ID_AAC;
    case MuxAudioCodec::kFlac:
      return AV_CODEC_ID_FLAC;
    case MuxAudioCodec::kOpus:
      return AV_CODEC_ID_OPUS;
  }
  FOLEY_CHECK(false, "unknown MuxAudioCodec");
  return AV_CODEC_ID_NONE;
}

void require_codec(const AVOutputFormat* f, AVCodecID id, const char* what) {
  if (avformat_query_codec(f, id, FF_COMPLIANCE_EXPERIMENTAL) == 0)
    throw make_error(ErrorKind::kUnsupported, "%s cannot hold %s %s", f->name, avcodec_get_name(id),
                     what);
}

// Metadata worth carrying over; container bookkeeping (brands, encoder, durations) is rewritten
// by the muxer.
void copy_metadata(AVDictionary** dst, const AVDictionary* src) {
  const AVDictionaryEntry* e = nullptr;
  while ((e = av_dict_get(src, "", e, AV_DICT_IGNORE_SUFFIX))) {
    bool skip = false;
    for (const char* k : {"major_brand", "minor_version", "compatible_brands", "encoder",
                          "duration", "creation_time"})
      skip |= !av_strcasecmp(e->key, k);
    if (!skip) av_dict_set(dst, e->key, e->value, 0);
  }
}

// A stream copied without re-encoding: parameters, side data (display matrix, ...), timing hints.
AVStream* add_copied_stream(AVFormatContext* out, const AVStream* in) {
  AVStream* st = avformat_new_stream(out, nullptr);
  if (!st) throw std::bad_alloc();
  int err = avcodec_parameters_copy(st->codecpar, in->codecpar);
  if (err < 0) fail(ErrorKind::kInternal, "copying stream parameters", err);
  // Keep the input's codec tag only where it is valid for the output (hvc1 stays hvc1 in MP4).
  const uint32_t tag = in->codecpar->codec_tag;
  if (!out->oformat->codec_tag ||
      av_codec_get_id(out->oformat->codec_tag, tag) != in->codecpar->codec_id)
    st->codecpar->codec_tag = 0;
  st->time_base = in->time_base;
  st->avg_frame_rate = in->avg_frame_rate;
  st->r_frame_rate = in->r_frame_rate;
  st->sample_aspect_ratio = in->sample_aspect_ratio;
  st->disposition = in->disposition;
  copy_metadata(&st->metadata, in->metadata);
  for (int i = 0; i < in->nb_side_data; ++i) {
    const AVPacketSideData& sd = in->side_data[i];
    uint8_t* dst = av_stream_new_side_data(st, sd.type, sd.size);
    if (!dst) throw std::bad_alloc();
    std::memcpy(dst, sd.data, sd.size);
  }
  return st;
}

// First and end timestamps of the video stream's packets (a demux-only pass, no decoding): the
// duration the audio is trimmed or padded to.
struct Span {
  int64_t start = 0, end = 0;
};
Span scan_video(const std::string& path, const MediaLimits& limits, const av::Deadline& deadline,
                int stream) {
  av::InputPtr in = av::open_input(path, limits, deadline);
  for (unsigned i = 0; i < in->nb_streams; ++i)
    if (int(i) != stream) in->streams[i]->discard = AVDISCARD_ALL;
  const AVStream* st = in->streams[stream];
  // For a last packet without a duration: one frame at the nominal rate.
  const AVRational rate = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
  const int64_t frame = rate.num > 0 ? av_rescale_q(1, av_inv_q(rate), st->time_base) : 0;
  av::PacketPtr pkt = av::alloc_packet();
  Span s;
  bool any = false;
  for (;;) {
    deadline.check();
    const int err = av_read_frame(in.get(), pkt.get());
    if (err < 0) break;
    if (pkt->stream_index == stream) {
      const int64_t ts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
      if (ts != AV_NOPTS_VALUE) {
        const int64_t end = ts + (pkt->duration > 0 ? pkt->duration : frame);
        s.start = any ? std::min(s.start, ts) : ts;
        s.end = any ? std::max(s.end, end) : end;
        any = true;
      }
    }
    av_packet_unref(pkt.get());
  }
  if (!any || s.end <= s.start)
    throw Error(ErrorKind::kInvalidInput, "the video stream has no timestamped packets");
  return s;
}

}  // namespace

void mux_audio(const std::string& video, const float* samples, size_t count, int sample_rate,
               const std::string& output, const MuxOptions& options) {
  if (options.channels != 1 && options.channels != 2)
    throw make_error(ErrorKind::kInvalidInput, "audio channels must be 1 or 2, got %d",
                     options.channels);
  if (sample_rate < 1000 || sample_rate > 384000)
    throw make_error(ErrorKind::kInvalidInput, "sample rate %d is out of range", sample_rate);
  if (options.codec != MuxAudioCodec::kFlac &&
      (options.bitrate < 16000 || options.bitrate > 512000))
    throw make_error(ErrorKind::kInvalidInput, "audio bitrate %d is outside 16k..512k",
                     options.bitrate);
  if (count > 0 && !samples) throw Error(ErrorKind::kInvalidInput, "mux_audio: no samples");
  const AVOutputFormat* ofmt = output_format_for(output);
  const AVCodecID audio_id = codec_id(options.codec);
  require_codec(ofmt, audio_id, "audio");

  const av::Deadline deadline(options.limits.max_wall_sec);
  av::InputPtr in = av::open_input(video, options.limits, deadline);
  const int vstream = av::first_video_stream(in.get());
  if (vstream < 0) throw Error(ErrorKind::kInvalidInput, "'" + video + "' has no video stream");
  const AVStream* ivst = in->streams[vstream];
  require_codec(ofmt, ivst->codecpar->codec_id, "video");
  const Span span = scan_video(video, options.limits, deadline, vstream);

  const std::vector<float> audio = av::resample_mono(samples, count, sample_rate, kOutRate);
  const int64_t total = av_rescale_q(span.end - span.start, ivst->time_base, {1, kOutRate});
  const int64_t audio_offset = av_rescale_q(span.start, ivst->time_base, {1, kOutRate});

  media::AtomicFile file(output);
  AVFormatContext* raw = nullptr;
  // The URL matters: the MP4 muxer reopens the file to move the index to the front (faststart).
  const std::string url = "file:" + file.temp_path();
  int err = avformat_alloc_output_context2(&raw, ofmt, nullptr, url.c_str());
  if (err < 0) fail(ErrorKind::kInternal, "cannot create the output container", err);
  av::OutputPtr out(raw);
  out->interrupt_callback = deadline.callback();
  err = av_opt_set(out.get(), "protocol_whitelist", "file", 0);
  if (err < 0) fail(ErrorKind::kInternal, "cannot restrict output protocols", err);
  // FFmpeg 5.1 marks FLAC (and Opus) in MP4 as experimental.
  if (is_mp4_family(ofmt) && audio_id != AV_CODEC_ID_AAC)
    out->strict_std_compliance = FF_COMPLIANCE_EXPERIMENTAL;
  copy_metadata(&out->metadata, in->metadata);

  // Streams: copied video, generated audio, then (optionally) the original audio tracks.
  std::vector<int> map(in->nb_streams, -1);
  const AVStream* ovst = add_copied_stream(out.get(), ivst);
  map[vstream] = ovst->index;
  av::AudioEncoder enc(audio_id, kOutRate, options.channels, options.bitrate, 24,
                       ofmt->flags & AVFMT_GLOBALHEADER);
  AVStream* ast = avformat_new_stream(out.get(), nullptr);
  if (!ast) throw std::bad_alloc();
  err = avcodec_parameters_from_context(ast->codecpar, enc.context());
  if (err < 0) fail(ErrorKind::kInternal, "audio stream setup failed", err);
  ast->time_base = enc.context()->time_base;
  ast->disposition = AV_DISPOSITION_DEFAULT;
  for (unsigned i = 0; i < in->nb_streams; ++i) {
    const AVStream* s = in->streams[i];
    if (options.keep_original_audio && s->codecpar->codec_type == AVMEDIA_TYPE_AUDIO) {
      require_codec(ofmt, s->codecpar->codec_id, "audio (original track)");
      AVStream* o = add_copied_stream(out.get(), s);
      o->disposition &= ~AV_DISPOSITION_DEFAULT;
      map[i] = o->index;
    } else if (map[i] < 0) {
      in->streams[i]->discard = AVDISCARD_ALL;
    }
  }

  av::Dict io;
  io.set("protocol_whitelist", "file");
  err = avio_open2(&out->pb, url.c_str(), AVIO_FLAG_WRITE, &out->interrupt_callback, io.ptr());
  if (err < 0) fail(ErrorKind::kInternal, "cannot write '" + output + "'", err);
  av::Dict mux_opts;
  if (is_mp4_family(ofmt)) mux_opts.set("movflags", "+faststart");  // playable while downloading
  err = avformat_write_header(out.get(), mux_opts.ptr());
  if (err < 0)
    fail(ErrorKind::kUnsupported, "cannot write the " + std::string(ofmt->name) + " header", err);

  const auto write = [&](AVPacket* pkt) {
    const int e = av_interleaved_write_frame(out.get(), pkt);
    if (e < 0) {
      deadline.check();
      fail(ErrorKind::kInvalidInput, "writing the output failed", e);
    }
  };
  const auto write_audio = [&](AVPacket* pkt) {
    pkt->pts = pkt->pts == AV_NOPTS_VALUE ? pkt->pts : pkt->pts + audio_offset;
    pkt->dts = pkt->dts == AV_NOPTS_VALUE ? pkt->dts : pkt->dts + audio_offset;
    pkt->stream_index = ast->index;
    av_packet_rescale_ts(pkt, enc.context()->time_base, ast->time_base);
    write(pkt);
  };
  enc.set_source(audio.data(), audio.size(), total);

  // Keep the audio about half a second ahead of the video so the interleaver holds little.
  const int64_t lead = kOutRate / 2;
  av::PacketPtr pkt = av::alloc_packet();
  for (;;) {
    deadline.check();
    err = av_read_frame(in.get(), pkt.get());
    if (err == AVERROR_EOF) break;
    if (err < 0) fail(ErrorKind::kInvalidInput, "reading '" + video + "' failed", err);
    const int idx = map[pkt->stream_index];
    if (idx < 0) {
      av_packet_unref(pkt.get());
      continue;
    }
    const AVStream* ist = in->streams[pkt->stream_index];
    if (pkt->stream_index == vstream && pkt->dts != AV_NOPTS_VALUE) {
      const int64_t at = av_rescale_q(pkt->dts, ist->time_base, {1, kOutRate}) - audio_offset;
      while (enc.position() < at + lead && enc.step(write_audio)) {
      }
    }
    av_packet_rescale_ts(pkt.get(), ist->time_base, out->streams[idx]->time_base);
    pkt->stream_index = idx;
    pkt->pos = -1;
    write(pkt.get());  // takes the packet's reference
  }
  while (enc.step(write_audio)) {
  }
  err = av_write_trailer(out.get());
  if (err < 0) fail(ErrorKind::kInternal, "finishing '" + output + "' failed", err);
  err = avio_closep(&out->pb);
  if (err < 0) fail(ErrorKind::kInternal, "writing '" + output + "' failed", err);
  file.commit();
}

}  // namespace foley
