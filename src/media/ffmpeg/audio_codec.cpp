#include "media/ffmpeg/audio_codec.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "media/common/atomic_file.h"
#include "media/common/variant.h"
#include "media/common/wav.h"

extern "C" {
#include <libavutil/opt.h>
}

namespace foley::media::av {
namespace {

const AVCodec* find_encoder(AVCodecID id) {
  // FFmpeg's native Opus encoder is experimental; libopus is the real one.
  const AVCodec* c =
      id == AV_CODEC_ID_OPUS ? avcodec_find_encoder_by_name("libopus") : avcodec_find_encoder(id);
  if (!c)
    throw make_error(ErrorKind::kUnsupported, "this FFmpeg has no %s encoder",
                     avcodec_get_name(id));
  return c;
}

AVSampleFormat pick_format(const AVCodec* codec, int bits) {
  const AVSampleFormat wanted = bits == 24 ? AV_SAMPLE_FMT_S32 : AV_SAMPLE_FMT_S16;
  const AVSampleFormat usable[] = {AV_SAMPLE_FMT_FLTP, AV_SAMPLE_FMT_FLT, AV_SAMPLE_FMT_S16,
                                   AV_SAMPLE_FMT_S16P, AV_SAMPLE_FMT_S32, AV_SAMPLE_FMT_S32P};
  for (const AVSampleFormat* f = codec->sample_fmts; f && *f != AV_SAMPLE_FMT_NONE; ++f) {
    if (codec->id == AV_CODEC_ID_FLAC) {
      if (*f == wanted) return *f;
    } else if (std::find(std::begin(usable), std::end(usable), *f) != std::end(usable)) {
      return *f;
    }
  }
  throw make_error(ErrorKind::kInternal, "no usable sample format for the %s encoder", codec->name);
}

}  // namespace

AudioEncoder::AudioEncoder(AVCodecID id, int sample_rate, int channels, int bitrate, int bits,
                           bool global_header) {
  const AVCodec* codec = find_encoder(id);
  ctx_.reset(avcodec_alloc_context3(codec));
  if (!ctx_) throw std::bad_alloc();
  ctx_->sample_fmt = pick_format(codec, bits);
  ctx_->sample_rate = sample_rate;
  av_channel_layout_default(&ctx_->ch_layout, channels);
  ctx_->time_base = AVRational{1, sample_rate};
  if (id != AV_CODEC_ID_FLAC) ctx_->bit_rate = bitrate;
  if (id == AV_CODEC_ID_FLAC) ctx_->bits_per_raw_sample = bits;
  if (global_header) ctx_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  const int err = avcodec_open2(ctx_.get(), codec, nullptr);
  if (err < 0)
    fail(ErrorKind::kUnsupported, std::string("cannot open the ") + codec->name + " encoder", err);
  frame_ = alloc_frame();
  packet_ = alloc_packet();
}

void AudioEncoder::set_source(const float* mono, size_t count, int64_t total) {
  mono_ = mono;
  count_ = count;
  total_ = total;
}

void AudioEncoder::fill(AVFrame* f, int n) {
  const int channels = ctx_->ch_layout.nb_channels;
  const AVSampleFormat fmt = ctx_->sample_fmt;
  const bool planar = av_sample_fmt_is_planar(fmt);
  for (int i = 0; i < n; ++i) {
    const int64_t at = pos_ + i;
    const float x = at < int64_t(count_) ? sanitize_sample(mono_[at]) : 0.f;
    for (int c = 0; c < channels; ++c) {
      uint8_t* base = f->data[planar ? c : 0];
      const int idx = planar ? i : i * channels + c;
      switch (fmt) {
        case AV_SAMPLE_FMT_FLT:
        case AV_SAMPLE_FMT_FLTP:
          reinterpret_cast<float*>(base)[idx] = x;
          break;
        case AV_SAMPLE_FMT_S16:
        case AV_SAMPLE_FMT_S16P:
          reinterpret_cast<int16_t*>(base)[idx] = to_s16(x);
          break;
        default:  // S32 / S32P: FLAC reads the top bits_per_raw_sample bits
          reinterpret_cast<int32_t*>(base)[idx] =
              ctx_->bits_per_raw_sample == 24 ? int32_t(uint32_t(to_s24(x)) << 8)
                                              : int32_t(uint32_t(uint16_t(to_s16(x))) << 16);
          break;
      }
    }
  }
}

void AudioEncoder::drain(const std::function<void(AVPacket*)>& out) {
  for (;;) {
    const int err = avcodec_receive_packet(ctx_.get(), packet_.get());
    if (err == AVERROR(EAGAIN)) return;
    if (err == AVERROR_EOF) {
      done_ = true;
      return;
    }
    if (err < 0) fail(ErrorKind::kInternal, "audio encoding failed", err);
    out(packet_.get());
    av_packet_unref(packet_.get());
  }
}

bool AudioEncoder::step(const std::function<void(AVPacket*)>& out) {
  if (done_) return false;
  if (pos_ < total_) {
    const bool variable = ctx_->codec->capabilities & AV_CODEC_CAP_VARIABLE_FRAME_SIZE;
    const int frame_size = ctx_->frame_size > 0 && !variable ? ctx_->frame_size : 4096;
    const bool small_last = ctx_->codec->capabilities & AV_CODEC_CAP_SMALL_LAST_FRAME;
    int n = int(std::min<int64_t>(frame_size, total_ - pos_));
    if (n < frame_size && !small_last && !variable) n = frame_size;  // pad the tail with silence
    av_frame_unref(frame_.get());
    frame_->nb_samples = n;
    frame_->format = ctx_->sample_fmt;
    frame_->sample_rate = ctx_->sample_rate;
    int err = av_channel_layout_copy(&frame_->ch_layout, &ctx_->ch_layout);
    if (err >= 0) err = av_frame_get_buffer(frame_.get(), 0);
    if (err < 0) fail(ErrorKind::kInternal, "allocating an audio frame", err);
    fill(frame_.get(), n);
    frame_->pts = pos_;
    pos_ += n;
    err = avcodec_send_frame(ctx_.get(), frame_.get());
    if (err < 0) fail(ErrorKind::kInternal, "audio encoding failed", err);
  } else if (!flushed_) {
    flushed_ = true;
    const int err = avcodec_send_frame(ctx_.get(), nullptr);
    if (err < 0) fail(ErrorKind::kInternal, "audio encoder flush failed", err);
  }
  drain(out);
  return !done_;
}

std::vector<float> resample_mono(const float* samples, size_t count, int in_rate, int out_rate) {
  if (in_rate == out_rate) return std::vector<float>(samples, samples + count);
  SwrContext* raw = nullptr;
  AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
  int err = swr_alloc_set_opts2(&raw, &mono, AV_SAMPLE_FMT_FLT, out_rate, &mono, AV_SAMPLE_FMT_FLT,
                                in_rate, 0, nullptr);
  SwrPtr swr(raw);
  if (err >= 0) err = swr_init(swr.get());
  if (err < 0) fail(ErrorKind::kInternal, "cannot set up resampling", err);
  std::vector<float> out(size_t(av_rescale_rnd(int64_t(count), out_rate, in_rate, AV_ROUND_UP)) +
                         256);
  const uint8_t* in[] = {reinterpret_cast<const uint8_t*>(samples)};
  uint8_t* o[] = {reinterpret_cast<uint8_t*>(out.data())};
  int got = swr_convert(swr.get(), o, int(out.size()), in, int(count));
  if (got < 0) fail(ErrorKind::kInternal, "resampling failed", got);
  size_t total = size_t(got);
  o[0] = reinterpret_cast<uint8_t*>(out.data() + total);
  got = swr_convert(swr.get(), o, int(out.size() - total), nullptr, 0);  // flush the filter
  if (got < 0) fail(ErrorKind::kInternal, "resampling failed", got);
  total += size_t(got);
  out.resize(std::min<size_t>(
      total, size_t(av_rescale_rnd(int64_t(count), out_rate, in_rate, AV_ROUND_NEAR_INF))));
  return out;
}

}  // namespace foley::media::av

namespace foley::media {

void write_flac(const std::string& path, const float* samples, size_t count, int sample_rate,
                int channels, int bits) {
  av::quiet_logging();
  av::clear_last_log();
  if (sample_rate > 655350)
    throw make_error(ErrorKind::kInvalidInput, "FLAC cannot store %d Hz", sample_rate);
  AtomicFile file(path);
  AVFormatContext* raw = nullptr;
  int err = avformat_alloc_output_context2(&raw, nullptr, "flac", nullptr);
  if (err < 0) av::fail(ErrorKind::kInternal, "cannot create a FLAC muxer", err);
  av::OutputPtr out(raw);
  av::AudioEncoder enc(AV_CODEC_ID_FLAC, sample_rate, channels, 0, bits,
                       out->oformat->flags & AVFMT_GLOBALHEADER);
  AVStream* st = avformat_new_stream(out.get(), nullptr);
  if (!st) throw std::bad_alloc();
  err = avcodec_parameters_from_context(st->codecpar, enc.context());
  if (err < 0) av::fail(ErrorKind::kInternal, "FLAC stream setup failed", err);
  st->time_base = enc.context()->time_base;
  av::Dict io;
  io.set("protocol_whitelist", "file");
  err = avio_open2(&out->pb, ("file:" + file.temp_path()).c_str(), AVIO_FLAG_WRITE, nullptr,
                   io.ptr());
  if (err < 0) av::fail(ErrorKind::kInternal, "cannot write '" + path + "'", err);
  err = avformat_write_header(out.get(), nullptr);
  if (err < 0) av::fail(ErrorKind::kInternal, "cannot write the FLAC header", err);
  enc.set_source(samples, count, int64_t(count));
  const auto write = [&](AVPacket* pkt) {
    pkt->stream_index = st->index;
    av_packet_rescale_ts(pkt, enc.context()->time_base, st->time_base);
    const int e = av_write_frame(out.get(), pkt);
    if (e < 0) av::fail(ErrorKind::kInternal, "writing FLAC failed", e);
  };
  while (enc.step(write)) {
  }
  err = av_write_trailer(out.get());
  if (err < 0) av::fail(ErrorKind::kInternal, "finishing the FLAC file failed", err);
  err = avio_closep(&out->pb);
  if (err < 0) av::fail(ErrorKind::kInternal, "writing '" + path + "' failed", err);
  file.commit();
}

}  // namespace foley::media
