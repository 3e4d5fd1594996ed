// Media input and output: decoding a video into the two frame streams the model needs, writing
// the generated audio, and muxing it into a copy of the video.
//
//   foley::DecodeOptions opts;                       // 8 fps + 25 fps, 15 s cap, rotation honoured
//   foley::DecodedVideo v = foley::decode_video("clip.mp4", opts);
//   // v.semantic: [Tv,H,W,3] uint8 RGB for SigLIP2, v.sync: [T25,H,W,3] for Synchformer,
//   // v.timing: T25, latent length Ta, sync segments S, audio samples.
//   ...
//   foley::write_audio("out.wav", samples.data(), samples.size(), {});
//   foley::mux_audio("clip.mp4", samples.data(), samples.size(), 48000, "out.mp4", {});
//
// Frame selection follows the reference pipeline exactly (model-spec §1.1): for each rate a float64
// clock starts at 0 and advances by `+= 1.0 / fps`; each decoded frame with time t (the correctly
// rounded double of pts·time_base) fills every pending target with t >= clock; frames before 0 are
// skipped and the first frame after `end_sec` stops the sampling.
//
// Where this deliberately differs from the reference (PyAV, which decodes the file twice): rotation
// metadata is honoured by default (Rotation); decoding stops at the first frame past end_sec
// instead of decoding the whole file (same frames for monotonic timestamps); frames without a pts
// use the best-effort timestamp (PyAV would fail); cover-art streams are not taken as the video;
// corrupt packets are skipped and a truncated file yields the frames before the damage (PyAV
// raises); a resolution change mid-stream is an error (the reference fails in np.stack as well).
//
// Untrusted input: files are read through the `file` protocol only, container formats come from an
// allow-list (no playlists, concat scripts or image sequences), and resolution, frame count, memory
// and wall-clock time are capped by MediaLimits. Every failure is a foley::Error with a one-line
// message: kInvalidInput for damaged or unusable files and for pictures or decode work beyond
// the pixel budgets (max_frame_pixels, max_decode_pixels), kUnsupported for well-formed files
// outside the other limits or features. A stream that yields no frame at all says why ("could not
// decode any video frame: <decoder's error>"), not just that the clip is too short. FFmpeg's own
// log output is never printed.
//
// All functions are thread-safe; each call owns its decoder. The one process-wide setting is
// FFmpeg's log callback, which the library installs on first use (FOLEY_FFMPEG_LOG=warning or
// =debug prints FFmpeg's log to stderr when debugging).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "foley/error.h"

namespace foley {

// ---- limits -------------------------------------------------------------------------------------

struct MediaLimits {
  int max_width = 8192;
  int max_height = 8192;
  // Decode work, bounded before any frame is decoded (a 1 KB GIF can declare an 8000x8000 canvas
  // that every frame repaints). Refused with kInvalidInput, naming the numbers:
  // - one frame above max_frame_pixels (width·height). 36 MP admits 8K UHD (7680x4320, 33.2 MP)
  //   and refuses 8000x8000 (64 MP); the model looks at 512x512 and 224x224 anyway;
  // - width·height · the frames that decoding up to end_sec would take (from the stream's frame
  //   rate and duration) above max_decode_pixels; the same sum is also counted while decoding, so
  //   a stream whose frame rate or duration lied is stopped at the budget. 4 gigapixels admits
  //   4K (3840x2160) at 30 fps or 1080p at 120 fps for the whole 15 s the model uses (3.7 Gpx),
  //   4K at 60 fps for about 8 s. probe_video, which knows no end_sec, assumes the default 15 s.
  int64_t max_frame_pixels = 36'000'000;
  int64_t max_decode_pixels = 4'000'000'000;
  // Declared container/stream duration above which a file is refused (decode and mux).
  double max_duration_sec = 4 * 3600.0;
  // Video frames decoded in one call, including those before 0 s that sampling skips.
  int64_t max_decoded_frames = 20000;
  // RGB bytes decode_video may hold for both frame streams together.
  int64_t max_output_bytes = int64_t{8} << 30;
  // Container probing: bytes read and stream time analysed before decoding starts.
  int64_t probe_bytes = 5'000'000;
  int64_t analyze_duration_us = 5'000'000;
  // Wall-clock budget for one call (open, decode or mux); blocking I/O is interrupted at this
  // point.
  double max_wall_sec = 300.0;
};

// ---- decoding -----------------------------------------------------------------------------------

enum class Rotation {
  // Apply the container's display matrix (or, failing that, the first frame's) after the RGB
  // conversion: 90/180/270° exactly as `ffmpeg` autorotates (tested against its CLI). Mirroring
  // matrices are applied as libavutil defines them; FFmpeg 5.1's CLI ignores mirroring, so that
  // case has no reference to compare with. Other angles are left unrotated.
  kHonour,
  kIgnore,  // coded orientation, as the reference (PyAV to_ndarray) does
};

enum class ColorMatrix {
  // What PyAV's frame.to_ndarray(format="rgb24") does with its defaults (no PyAV here to compare;
  // this follows its VideoReformatter: sws_getCachedContext(..., SWS_BILINEAR) without
  // colour-space arguments): swscale's default BT.601 coefficients and the range implied by the
  // pixel format (full for yuvj*, limited otherwise), whatever the file's tags. Bit-exact with
  // `ffmpeg -sws_flags bilinear -pix_fmt rgb24` on untagged input (tested).
  kReference,
  // The frame's own colour-space and range tags (BT.709 for most HD video), BT.601 if untagged.
  kFromFile,
};

struct DecodeOptions {
  double semantic_fps = 8.0;  // SigLIP2 stream
  double sync_fps = 25.0;     // Synchformer stream; the clip timing is derived from its length
  double end_sec = 15.0;      // frames later than this stop the sampling (reference: 15 s)
  Rotation rotation = Rotation::kHonour;
  ColorMatrix color = ColorMatrix::kReference;
  // The reference measures frame times from 0, not from the stream's start time, so a stream that
  // starts at 1.4 s (MPEG-TS) repeats its first frame for the first 1.4 s. True rebases times to
  // the first decoded frame instead.
  bool rebase_to_first_frame = false;
  int decoder_threads = 0;  // 0: FFmpeg's automatic choice
  MediaLimits limits;
};

// Lengths derived from the number of 25 fps frames T25 (model-spec §1.1, §1.6).
struct ClipTiming {
  int sync_frames = 0;        // T25
  int latent_frames = 0;      // Ta = int(T25 / 25.0 * 50.0) in float64 (not always 2·T25)
  int sync_segments = 0;      // S = (T25 - 16) / 8 + 1
  int64_t audio_samples = 0;  // Ta · 960 at 48 kHz
  double audio_seconds = 0;   // T25 / 25
};
// Throws Error(kInvalidInput, "clip too short: needs at least 0.64 s ...") when t25 < 16.
ClipTiming clip_timing(int t25);

// uint8 RGB frames [count, height, width, 3], contiguous and row-major.
struct FrameStack {
  int count = 0;
  int height = 0;
  int width = 0;
  std::vector<uint8_t> rgb;
  // Per output frame: the time in seconds of the source frame it came from, and that frame's
  // index in decoding order (0-based, counting every decoded frame, also skipped ones).
  std::vector<double> source_time;
  std::vector<int64_t> source_index;

  size_t frame_bytes() const { return size_t(height) * size_t(width) * 3; }
  const uint8_t* frame(int i) const { return rgb.data() + size_t(i) * frame_bytes(); }
};

struct VideoInfo {
  std::string container;  // demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
  std::string codec;      // e.g. "h264"
  int width = 0;          // coded size, before rotation
  int height = 0;
  int rotation_cw = 0;      // clockwise degrees the display matrix asks for (0/90/180/270)
  bool mirrored = false;    // the display matrix also mirrors the picture
  double frame_rate = 0;    // average (or guessed) frames per second, 0 if unknown
  double duration_sec = 0;  // video stream duration if known, else the container's; 0 if unknown
  double start_sec = 0;     // video stream start time
  bool has_audio = false;
};

struct DecodedVideo {
  VideoInfo info;
  FrameStack semantic;  // at semantic_fps (8)
  FrameStack sync;      // at sync_fps (25)
  ClipTiming timing;    // from sync.count
  int64_t decoded_frames = 0;
};

// Decodes once and fills both frame streams at native resolution (after rotation, if honoured).
DecodedVideo decode_video(const std::string& path, const DecodeOptions& options = {});

// Streaming form: `sink` is called once per distinct source frame that either stream selected,
// in time order, without storing frames (e.g. to resize them on the fly). The frame's pixels are
// valid only during the call.
struct SampledFrame {
  const uint8_t* rgb = nullptr;  // height × width × 3, rows contiguous
  int width = 0;
  int height = 0;
  double time = 0;
  int64_t source_index = 0;
  // This frame fills output positions [first, first + count) of each stream (count may be 0).
  int semantic_first = 0, semantic_count = 0;
  int sync_first = 0, sync_count = 0;
};
struct SamplingResult {
  VideoInfo info;
  int semantic_frames = 0;
  int sync_frames = 0;
  int64_t decoded_frames = 0;
};
// Does not check the minimum length; call clip_timing(result.sync_frames) for that.
SamplingResult decode_video_frames(const std::string& path, const DecodeOptions& options,
                                   const std::function<void(const SampledFrame&)>& sink);

// Container and stream facts without decoding (cheap; for validating uploads). Applies the size
// limits and the decode-work estimate (for the default 15 s span), so an upload that decode_video
// would refuse up front is refused here already.
VideoInfo probe_video(const std::string& path, const MediaLimits& limits = {});

// The up-front part of those checks, for a stream described by `info`, decoded up to `end_sec`:
// throws kUnsupported above max_width/max_height and kInvalidInput above max_frame_pixels or
// when width·height·(estimated frames) exceeds max_decode_pixels. Unknown sizes (0) pass; an
// unknown frame rate is left to the count made while decoding.
void check_video_limits(const VideoInfo& info, double end_sec, const MediaLimits& limits);

// ---- audio files --------------------------------------------------------------------------------

enum class AudioFormat {
  kWavF32,  // IEEE float WAV, what the reference writes (torchaudio.save)
  kWavS16,  // 16-bit PCM WAV
  kFlac16,  // FLAC, 16-bit (needs FFmpeg)
  kFlac24,  // FLAC, 24-bit (needs FFmpeg)
};

struct AudioWriteOptions {
  AudioFormat format = AudioFormat::kWavF32;
  int sample_rate = 48000;
  int channels = 1;  // 1, or 2 with the mono signal duplicated
};

// Picks the format from the extension: .wav -> kWavF32, .flac -> kFlac24; others kUnsupported.
AudioFormat audio_format_for_path(const std::string& path);

// What write_audio had to change, counted over the mono input samples (not per channel).
struct AudioWriteStats {
  // Integer formats (kWavS16, kFlac16, kFlac24): samples outside [-1, 1] (±inf included) that
  // were clamped to ±1. Always 0 for kWavF32, which stores values as they are.
  int64_t clipped = 0;
  // NaN samples (and, in kWavF32, ±inf), written as 0.
  int64_t non_finite = 0;
};

// Writes mono float samples. Integer formats clamp to [-1, 1] and round to nearest (ties to even)
// without dither: s = round(x · 32767) for 16 bit, round(x · 8388607) for 24 bit, so -1 maps to
// -32767 and 0 stays 0. The returned stats say how many samples were clipped (worth a warning).
// The file appears atomically (temporary file in the same directory, then rename): on any error
// the destination is untouched and no temporary file is left behind.
AudioWriteStats write_audio(const std::string& path, const float* samples, size_t count,
                            const AudioWriteOptions& options = {});

struct AudioData {
  int sample_rate = 0;
  int channels = 0;
  std::vector<float> samples;  // interleaved
};
// Reads an audio file as float samples at its own rate and channel count. Without FFmpeg only
// WAV (PCM 16/24/32-bit, float 32-bit) is understood.
AudioData read_audio(const std::string& path, const MediaLimits& limits = {});

// ---- muxing -------------------------------------------------------------------------------------

enum class MuxAudioCodec {
  kAac,   // AAC-LC, what the reference produces (ffmpeg -c:a aac -b:a 192k -ac 2)
  kFlac,  // lossless; in MP4 it needs FFmpeg's experimental mode, which is enabled for it
  kOpus,  // libopus; MP4, MKV, WebM
};

struct MuxOptions {
  MuxAudioCodec codec = MuxAudioCodec::kAac;
  int bitrate = 192000;  // AAC and Opus
  int channels = 2;      // the mono track is duplicated to stereo by default
  // Keep the input's audio tracks after the generated one (default: the generated track replaces
  // them).
  bool keep_original_audio = false;
  MediaLimits limits;
};

// Writes `output` (container chosen from its extension: .mp4 .mov .m4v .mkv .webm) with the video
// stream of `video` copied packet for packet (no re-encoding; rotation and other stream side data
// kept) and `samples` (mono float at `sample_rate`) encoded as the audio track. The audio is
// trimmed or padded with silence to the video stream's duration. Atomic like write_audio.
// MP4/MOV output keeps the rotation; FFmpeg 5.1's Matroska muxer cannot store a display matrix,
// so .mkv/.webm output (like `ffmpeg -c copy` to .mkv) loses it.
// Without FFmpeg: Error(kUnsupported, "built without FFmpeg").
void mux_audio(const std::string& video, const float* samples, size_t count, int sample_rate,
               const std::string& output, const MuxOptions& options = {});

// True when built with FFmpeg (any container/codec); false: Y4M input and WAV output only.
bool media_has_ffmpeg();

}  // namespace foley
