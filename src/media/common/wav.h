// RIFF/WAVE files written and read by hand (no FFmpeg needed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "foley/media.h"

namespace foley::media {

// The WAV file bytes for mono `samples` duplicated to `channels` (format kWavF32 or kWavS16).
std::vector<uint8_t> encode_wav(const float* samples, size_t count, int sample_rate, int channels,
                                AudioFormat format);

// Parses PCM 8/16/24/32-bit and IEEE float 32/64-bit WAV (also WAVE_FORMAT_EXTENSIBLE).
AudioData decode_wav(const std::vector<uint8_t>& bytes);
AudioData read_wav_file(const std::string& path, const MediaLimits& limits);

// Sample conversions shared by the writers: clip to [-1, 1] (NaN -> 0) and round.
float sanitize_sample(float x);
int16_t to_s16(float x);
int32_t to_s24(float x);

}  // namespace foley::media
