// Encoding a mono float signal with libavcodec (AAC, FLAC, Opus), used by the FLAC file writer
// and the muxer.
#pragma once

#include <functional>
#include <vector>

#include "media/ffmpeg/av_util.h"

namespace foley::media::av {

class AudioEncoder {
 public:
  // `bits` is FLAC's sample depth (16 or 24); `global_header` as the muxer asks
  // (AVFMT_GLOBALHEADER).
  AudioEncoder(AVCodecID id, int sample_rate, int channels, int bitrate, int bits,
               bool global_header);
  AVCodecContext* context() const { return ctx_.get(); }
  // Signal to encode: `count` mono samples (duplicated to every channel), then silence up to
  // `total` samples. The buffer must outlive the encoding.
  void set_source(const float* mono, size_t count, int64_t total);
  // Time (in samples) up to which audio has been handed to the encoder.
  int64_t position() const { return pos_; }
  // Encodes one more frame, or flushes once the source is exhausted, passing every packet
  // produced (timestamps in 1/sample_rate) to `out`. Returns false when everything is out.
  bool step(const std::function<void(AVPacket*)>& out);

 private:
  void fill(AVFrame* frame, int n);
  void drain(const std::function<void(AVPacket*)>& out);

  CodecPtr ctx_;
  FramePtr frame_;
  PacketPtr packet_;
  const float* mono_ = nullptr;
  size_t count_ = 0;
  int64_t total_ = 0, pos_ = 0;
  bool flushed_ = false, done_ = false;
};

// Mono float resampled with libswresample (returns the input when the rates are equal).
std::vector<float> resample_mono(const float* samples, size_t count, int in_rate, int out_rate);

}  // namespace foley::media::av
