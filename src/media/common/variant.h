// What each media variant (src/media/ffmpeg or src/media/noffmpeg) implements for the common
// code, besides the public functions of foley/media.h that are variant-specific (probe_video,
// read_audio, mux_audio, media_has_ffmpeg).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "foley/media.h"

namespace foley::media {

// One open video stream, decoded frame by frame in presentation order. Frame selection, limits on
// frame counts and memory, and the sampling rule live in the common code (decode_video.cpp).
class VideoSource {
 public:
  virtual ~VideoSource() = default;
  virtual const VideoInfo& info() const = 0;
  // Decodes the next frame and gives its timestamp pts · tb_num / tb_den seconds; false at the
  // end of the stream. Throws foley::Error for damaged input, exceeded limits or the deadline.
  virtual bool next(int64_t* pts, int* tb_num, int* tb_den) = 0;
  // The current frame as packed RGB24, re-oriented as DecodeOptions::rotation asks; valid until
  // the next call to next(). Width and height are the same for every frame of a stream.
  virtual const uint8_t* rgb(int* width, int* height) = 0;
};

std::unique_ptr<VideoSource> open_video_source(const std::string& path,
                                               const DecodeOptions& options);

// Writes a FLAC file (bits 16 or 24) atomically; kUnsupported without FFmpeg.
void write_flac(const std::string& path, const float* samples, size_t count, int sample_rate,
                int channels, int bits);

}  // namespace foley::media
