// write_audio: WAV by hand for every build, FLAC through the variant.
#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/check.h"
#include "foley/media.h"
#include "media/common/atomic_file.h"
#include "media/common/variant.h"
#include "media/common/wav.h"

namespace foley {
namespace {

// What the encoders do to out-of-range values (media::sanitize_sample for integer formats,
// encode_wav's NaN/inf -> 0 for float WAV), counted.
AudioWriteStats count_changes(const float* samples, size_t count, AudioFormat format) {
  AudioWriteStats s;
  const bool is_float = format == AudioFormat::kWavF32;
  for (size_t i = 0; i < count; ++i) {
    const float x = samples[i];
    if (x != x || (is_float && std::isinf(x)))
      ++s.non_finite;
    else if (!is_float && (x > 1.f || x < -1.f))
      ++s.clipped;
  }
  return s;
}

}  // namespace

AudioFormat audio_format_for_path(const std::string& path) {
  const size_t dot = path.rfind('.');
  std::string ext = dot == std::string::npos ? "" : path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext == "wav") return AudioFormat::kWavF32;
  if (ext == "flac") return AudioFormat::kFlac24;
  throw Error(ErrorKind::kUnsupported,
              "cannot tell the audio format from '" + path + "' (use .wav or .flac)");
}

AudioWriteStats write_audio(const std::string& path, const float* samples, size_t count,
                            const AudioWriteOptions& options) {
  if (options.channels != 1 && options.channels != 2)
    throw make_error(ErrorKind::kInvalidInput, "audio channels must be 1 or 2, got %d",
                     options.channels);
  if (options.sample_rate < 1000 || options.sample_rate > 384000)
    throw make_error(ErrorKind::kInvalidInput, "sample rate %d is out of range",
                     options.sample_rate);
  if (count > 0 && samples == nullptr)
    throw Error(ErrorKind::kInvalidInput, "write_audio: no sample buffer");
  const AudioWriteStats stats = count_changes(samples, count, options.format);
  switch (options.format) {
    case AudioFormat::kWavF32:
    case AudioFormat::kWavS16: {
      const std::vector<uint8_t> bytes =
          media::encode_wav(samples, count, options.sample_rate, options.channels, options.format);
      media::AtomicFile file(path);
      file.write(bytes.data(), bytes.size());
      file.commit();
      return stats;
    }
    case AudioFormat::kFlac16:
    case AudioFormat::kFlac24:
      media::write_flac(path, samples, count, options.sample_rate, options.channels,
                        options.format == AudioFormat::kFlac16 ? 16 : 24);
      return stats;
  }
  FOLEY_CHECK(false, "write_audio: unknown format");
}

}  // namespace foley
