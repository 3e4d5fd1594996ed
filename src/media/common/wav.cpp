#include "media/common/wav.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/check.h"

namespace foley::media {
namespace {

constexpr uint16_t kFormatPcm = 1, kFormatFloat = 3, kFormatExtensible = 0xFFFE;

void put_u16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(uint8_t(v));
  b.push_back(uint8_t(v >> 8));
}
void put_u32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
}
void put_tag(std::vector<uint8_t>& b, const char* tag) {
  b.insert(b.end(), tag, tag + 4);
}

uint32_t get_u32(const uint8_t* p) {
  return p[0] | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24;
}
uint16_t get_u16(const uint8_t* p) {
  return uint16_t(p[0] | p[1] << 8);
}

}  // namespace

float sanitize_sample(float x) {
  if (!(x == x)) return 0.f;
  return x < -1.f ? -1.f : (x > 1.f ? 1.f : x);
}
int16_t to_s16(float x) {
  return int16_t(std::lrint(sanitize_sample(x) * 32767.f));
}
int32_t to_s24(float x) {
  return int32_t(std::lrint(double(sanitize_sample(x)) * 8388607.0));
}

std::vector<uint8_t> encode_wav(const float* samples, size_t count, int sample_rate, int channels,
                                AudioFormat format) {
  const bool is_float = format == AudioFormat::kWavF32;
  FOLEY_CHECK(is_float || format == AudioFormat::kWavS16, "encode_wav: not a WAV format");
  const uint32_t bytes_per_sample = is_float ? 4 : 2;
  const uint64_t data_bytes = uint64_t(count) * uint64_t(channels) * bytes_per_sample;
  if (data_bytes > 0xFFFFFFFFull - 64)
    throw Error(ErrorKind::kUnsupported, "audio too long for a WAV file (4 GiB limit)");
  std::vector<uint8_t> b;
  b.reserve(64 + size_t(data_bytes));
  // Float WAV carries an 18-byte fmt chunk and a fact chunk, as the RIFF spec asks for non-PCM.
  const uint32_t fmt_bytes = is_float ? 18 : 16;
  const uint32_t riff_bytes = 4 + (8 + fmt_bytes) + (is_float ? 12 : 0) + 8 + uint32_t(data_bytes);
  put_tag(b, "RIFF");
  put_u32(b, riff_bytes);
  put_tag(b, "WAVE");
  put_tag(b, "fmt ");
  put_u32(b, fmt_bytes);
  put_u16(b, is_float ? kFormatFloat : kFormatPcm);
  put_u16(b, uint16_t(channels));
  put_u32(b, uint32_t(sample_rate));
  put_u32(b, uint32_t(sample_rate) * uint32_t(channels) * bytes_per_sample);
  put_u16(b, uint16_t(channels * bytes_per_sample));
  put_u16(b, uint16_t(bytes_per_sample * 8));
  if (is_float) {
    put_u16(b, 0);  // cbSize
    put_tag(b, "fact");
    put_u32(b, 4);
    put_u32(b, uint32_t(count));
  }
  put_tag(b, "data");
  put_u32(b, uint32_t(data_bytes));
  for (size_t i = 0; i < count; ++i) {
    for (int c = 0; c < channels; ++c) {
      if (is_float) {
        uint32_t bits;
        const float x = std::isfinite(samples[i]) ? samples[i] : 0.f;  // keep values, drop NaN/inf
        std::memcpy(&bits, &x, 4);
        put_u32(b, bits);
      } else {
        put_u16(b, uint16_t(to_s16(samples[i])));
      }
    }
  }
  return b;
}

AudioData decode_wav(const std::vector<uint8_t>& bytes) {
  const uint8_t* p = bytes.data();
  const size_t n = bytes.size();
  if (n < 12 || std::memcmp(p, "RIFF", 4) != 0 || std::memcmp(p + 8, "WAVE", 4) != 0)
    throw Error(ErrorKind::kInvalidInput, "wav: not a RIFF/WAVE file");
  uint16_t format = 0, channels = 0, bits = 0;
  uint32_t rate = 0;
  const uint8_t* data = nullptr;
  size_t data_bytes = 0;
  for (size_t pos = 12; pos + 8 <= n;) {
    const uint32_t size = get_u32(p + pos + 4);
    const size_t body = pos + 8;
    const size_t avail = n - body;
    if (std::memcmp(p + pos, "fmt ", 4) == 0) {
      if (size < 16 || size > avail) throw Error(ErrorKind::kInvalidInput, "wav: bad fmt chunk");
      format = get_u16(p + body);
      channels = get_u16(p + body + 2);
      rate = get_u32(p + body + 4);
      bits = get_u16(p + body + 14);
      if (format == kFormatExtensible) {
        if (size < 40) throw Error(ErrorKind::kInvalidInput, "wav: bad extensible fmt chunk");
        format = get_u16(p + body + 24);  // first two bytes of the sub-format GUID
      }
    } else if (std::memcmp(p + pos, "data", 4) == 0) {
      data = p + body;
      data_bytes = size > avail ? avail : size;  // tolerate a truncated or streamed data chunk
      break;
    }
    if (size > avail) break;
    pos = body + size + (size & 1);
  }
  if (!format || !data) throw Error(ErrorKind::kInvalidInput, "wav: missing fmt or data chunk");
  if (channels == 0 || channels > 64 || rate == 0 || rate > 1'000'000)
    throw Error(ErrorKind::kInvalidInput, "wav: bad channel count or sample rate");
  const bool is_float = format == kFormatFloat;
  if (!(format == kFormatPcm && (bits == 8 || bits == 16 || bits == 24 || bits == 32)) &&
      !(is_float && (bits == 32 || bits == 64)))
    throw make_error(ErrorKind::kUnsupported, "wav: sample format %u with %u bits not supported",
                     format, bits);
  const size_t width = bits / 8;
  const size_t total = data_bytes / width / channels * channels;
  AudioData out;
  out.sample_rate = int(rate);
  out.channels = channels;
  out.samples.resize(total);
  for (size_t i = 0; i < total; ++i) {
    const uint8_t* s = data + i * width;
    float v;
    if (is_float && bits == 32) {
      std::memcpy(&v, s, 4);
    } else if (is_float) {
      double d;
      std::memcpy(&d, s, 8);
      v = float(d);
    } else if (bits == 8) {
      v = (int(s[0]) - 128) / 128.f;
    } else if (bits == 16) {
      v = int16_t(get_u16(s)) / 32768.f;
    } else if (bits == 24) {
      v = float(int32_t(uint32_t(s[0]) << 8 | uint32_t(s[1]) << 16 | uint32_t(s[2]) << 24) >> 8) /
          8388608.f;
    } else {
      v = float(double(int32_t(get_u32(s))) / 2147483648.0);
    }
    out.samples[i] = v;
  }
  return out;
}

AudioData read_wav_file(const std::string& path, const MediaLimits& limits) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    throw make_error(errno == ENOENT ? ErrorKind::kNotFound : ErrorKind::kInvalidInput,
                     "cannot open '%s': %s", path.c_str(), std::strerror(errno));
  struct stat st {};
  fstat(fileno(f), &st);
  if (st.st_size > limits.max_output_bytes) {
    std::fclose(f);
    throw Error(ErrorKind::kUnsupported, "wav: file larger than the memory limit");
  }
  std::vector<uint8_t> bytes(size_t(st.st_size));
  const size_t got = std::fread(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  bytes.resize(got);
  return decode_wav(bytes);
}

}  // namespace foley::media
