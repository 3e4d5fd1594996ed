// FFmpeg decoding: clips made with the ffmpeg CLI at test time, checked frame by frame against the
// reference rule, against ffmpeg's own RGB output, and for clean failures on bad input.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "foley/media.h"
#include "media/common/image.h"
#include "media/common/video_limits.h"
#include "media/common/y4m.h"
#include "media_clips.h"

#ifdef FOLEY_HAVE_FFMPEG

namespace foley {
namespace {

using test::media::capture;
using test::media::ffmpeg;
using test::media::index_source;
using test::media::read_index;
using test::media::reference_picks;

constexpr const char* kLossless = "-c:v libx264 -preset ultrafast -qp 0 -pix_fmt yuv420p";

// Decodes `path` and checks both streams, pixel-read frame by frame, against the rule applied to
// ffprobe's timestamps.
void expect_reference_sampling(const std::string& path, int expect_t25 = -1) {
  const test::media::ProbedFrames probed = test::media::probe_frames(path);
  ASSERT_FALSE(probed.pts.empty());
  const std::vector<int> want8 = reference_picks(probed.pts, probed.tb_num, probed.tb_den, 8);
  const std::vector<int> want25 = reference_picks(probed.pts, probed.tb_num, probed.tb_den, 25);
  const DecodedVideo v = decode_video(path);
  ASSERT_EQ(v.sync.count, int(want25.size())) << path;
  ASSERT_EQ(v.semantic.count, int(want8.size())) << path;
  if (expect_t25 >= 0) {
    EXPECT_EQ(v.sync.count, expect_t25);
  }
  for (int i = 0; i < v.sync.count; ++i)
    ASSERT_EQ(read_index(v.sync.frame(i), v.sync.width), want25[size_t(i)]) << path << " @" << i;
  for (int i = 0; i < v.semantic.count; ++i)
    ASSERT_EQ(read_index(v.semantic.frame(i), v.semantic.width), want8[size_t(i)])
        << path << " @" << i;
  EXPECT_EQ(v.timing.latent_frames, clip_timing(v.sync.count).latent_frames);
}

class MediaDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::media::have_ffmpeg_cli()) FOLEY_SKIP_MISSING("ffmpeg CLI not installed");
    dir_ = test::temp_dir();
  }
  std::string dir_;
};

TEST_F(MediaDecode, ConstantRatesPickReferenceFrames) {
  for (const std::string rate : {"1", "8", "24", "25", "30000/1001", "60"}) {
    const std::string path = dir_ + "/cfr.mp4";
    const double seconds = rate == "1" ? 4 : 2.5;
    ffmpeg(index_source(rate, seconds) + " " + kLossless + " " + path);
    SCOPED_TRACE(rate);
    expect_reference_sampling(path);
  }
}

TEST_F(MediaDecode, Mp4At25FpsHasTheSpecQuirkAndCap) {
  // 16 s at 25 fps in MP4 (time base 1/12800): T25 = 376, Tv = 121, target 6 takes frame 7.
  const std::string path = dir_ + "/long.mp4";
  ffmpeg(index_source("25", 16) + " " + kLossless + " " + path);
  expect_reference_sampling(path, 376);
  const DecodedVideo v = decode_video(path);
  EXPECT_EQ(v.semantic.count, 121);
  EXPECT_EQ(v.sync.source_index[6], 7);
  EXPECT_EQ(v.timing.latent_frames, 752);
  EXPECT_EQ(v.timing.sync_segments, 46);
  EXPECT_EQ(v.info.codec, "h264");
  EXPECT_NEAR(v.info.frame_rate, 25, 1e-9);
}

TEST_F(MediaDecode, FortySecondClipStopsAtTheCap) {
  const std::string path = dir_ + "/40s.mkv";
  ffmpeg(index_source("25", 40) + " " + kLossless + " " + path);
  const auto t0 = std::chrono::steady_clock::now();
  const DecodedVideo v = decode_video(path);
  EXPECT_EQ(v.sync.count, 376);
  EXPECT_EQ(v.semantic.count, 121);
  EXPECT_LT(v.decoded_frames, 400);  // decoding stopped near 15 s, not at 40 s
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  DecodeOptions longer;
  longer.end_sec = 30;  // the long-video mode's parameter
  EXPECT_EQ(decode_video(path, longer).sync.count, 751);
}

TEST_F(MediaDecode, VariableFrameRate) {
  // Irregular gaps of 10..90 ms, kept as they are (no frame-rate conversion).
  const std::string vf = "-vf \"setpts='(N*0.05+0.04*sin(N*N))/TB'\" -fps_mode passthrough";
  ffmpeg(index_source("25", 3) + " " + vf + " " + kLossless + " " + dir_ + "/vfr.mkv");
  expect_reference_sampling(dir_ + "/vfr.mkv");
  ffmpeg(index_source("25", 3) + " " + vf + " " + kLossless + " -video_track_timescale 90000 " +
         dir_ + "/vfr.mp4");
  expect_reference_sampling(dir_ + "/vfr.mp4");
}

TEST_F(MediaDecode, BFramesAndLossyCodecs) {
  // Reordered frames (B-frames), and codecs other than H.264: indices survive lossy coding.
  ffmpeg(index_source("25", 2) + " -c:v libx264 -preset medium -crf 18 -bf 3 -pix_fmt yuv420p " +
         dir_ + "/b.mp4");
  expect_reference_sampling(dir_ + "/b.mp4");
  ffmpeg(index_source("30", 2) + " -c:v mpeg4 -q:v 2 " + dir_ + "/m.avi");
  expect_reference_sampling(dir_ + "/m.avi");
  ffmpeg(index_source("24", 2) + " -c:v libvpx -b:v 1M -deadline realtime " + dir_ + "/v.webm");
  expect_reference_sampling(dir_ + "/v.webm");
  ffmpeg(index_source("25", 2) + " -c:v mpeg2video -q:v 2 -f mpegts " + dir_ + "/t.ts");
  expect_reference_sampling(dir_ + "/t.ts");
}

TEST_F(MediaDecode, MpegTsStartTimeIsNotRebasedByDefault) {
  // MPEG-TS streams start at 1.4 s: the reference repeats the first frame for targets 0..1.4 s.
  ffmpeg(index_source("25", 2) + " -c:v mpeg2video -q:v 2 -f mpegts " + dir_ + "/t.ts");
  const DecodedVideo v = decode_video(dir_ + "/t.ts");
  EXPECT_GT(v.info.start_sec, 1.0);
  EXPECT_EQ(v.sync.source_index[0], v.sync.source_index[30]);
  DecodeOptions o;
  o.rebase_to_first_frame = true;
  const DecodedVideo r = decode_video(dir_ + "/t.ts", o);
  test::media::ProbedFrames p = test::media::probe_frames(dir_ + "/t.ts");
  const int64_t first = p.pts[0];
  for (int64_t& t : p.pts) t -= first;
  const std::vector<int> want = reference_picks(p.pts, p.tb_num, p.tb_den, 25);
  ASSERT_EQ(r.sync.count, int(want.size()));
  for (int i = 0; i < r.sync.count; ++i)
    EXPECT_EQ(read_index(r.sync.frame(i), 128), want[size_t(i)]);
}

// Raw RGB frames as the ffmpeg CLI converts them (bilinear swscale, as PyAV uses).
std::string ffmpeg_rgb(const std::string& path, const std::string& extra = "") {
  std::string out;
  const int rc = test::run_command("ffmpeg -nostdin -v error -i '" + path + "' " + extra +
                                       " -sws_flags bilinear -pix_fmt rgb24 -f rawvideo -",
                                   &out);
  EXPECT_EQ(rc, 0);
  return out;
}

int max_diff(const uint8_t* a, const uint8_t* b, size_t n) {
  int m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::abs(int(a[i]) - int(b[i])));
  return m;
}

TEST_F(MediaDecode, RgbMatchesFfmpegConversion) {
  struct Case {
    std::string name, args;
  } cases[] = {
      {"yuv420p.mp4", "-c:v libx264 -preset ultrafast -qp 0 -pix_fmt yuv420p"},
      {"yuv444p.mp4", "-c:v libx264 -preset ultrafast -qp 0 -pix_fmt yuv444p"},
      {"yuv422p.mkv", "-c:v libx264 -preset ultrafast -qp 0 -pix_fmt yuv422p"},
      {"yuvj420p.avi", "-c:v mjpeg -q:v 3 -pix_fmt yuvj420p"},
      {"odd.mkv", "-c:v ffv1 -pix_fmt yuv420p -vf scale=127:95"},
      {"rgb.mkv", "-c:v ffv1 -pix_fmt bgr0"},
      {"gray.mkv", "-c:v ffv1 -pix_fmt gray"},
      {"p10.mkv", "-c:v ffv1 -pix_fmt yuv420p10le"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = dir_ + "/" + c.name;
    ffmpeg("-f lavfi -i testsrc2=s=128x96:r=25:d=0.8 " + c.args + " " + path);
    const DecodedVideo v = decode_video(path);
    const std::string ref = ffmpeg_rgb(path);
    const size_t fb = v.sync.frame_bytes();
    ASSERT_EQ(ref.size() % fb, 0u);
    for (int i = 0; i < v.sync.count; ++i) {
      const size_t src = size_t(v.sync.source_index[size_t(i)]);
      ASSERT_LE((src + 1) * fb, ref.size());
      EXPECT_LE(
          max_diff(v.sync.frame(i), reinterpret_cast<const uint8_t*>(ref.data()) + src * fb, fb), 0)
          << "frame " << i;
    }
  }
}

TEST_F(MediaDecode, Y4mConverterMatchesFfmpeg) {
  // The no-FFmpeg build's own YUV -> RGB conversion against swscale.
  for (const std::string fmt : {"yuv420p", "yuv422p", "yuv444p", "gray"}) {
    SCOPED_TRACE(fmt);
    const std::string path = dir_ + "/c.y4m";
    ffmpeg("-f lavfi -i testsrc2=s=128x96:r=25:d=0.2 -pix_fmt " + fmt + " -strict -1 " + path);
    media::Y4mReader r(path, {});
    const std::string ref = ffmpeg_rgb(path);
    std::vector<uint8_t> planes, rgb(128 * 96 * 3);
    size_t frame = 0;
    while (r.next_frame(planes)) {
      media::yuv_to_rgb24(r.plane(planes, 0), r.plane(planes, 1), r.plane(planes, 2), 128, 96,
                          r.header().chroma, false, rgb.data());
      ASSERT_LE((frame + 1) * rgb.size(), ref.size());
      // Bit-exact for 4:2:0 / 4:2:2 / gray (swscale's x86 arithmetic), ±1 for 4:4:4.
      EXPECT_LE(
          max_diff(rgb.data(), reinterpret_cast<const uint8_t*>(ref.data()) + frame * rgb.size(),
                   rgb.size()),
          fmt == "yuv444p" ? 1 : 0);
      ++frame;
    }
    EXPECT_EQ(frame, 5u);
  }
}

TEST_F(MediaDecode, RotationFollowsDisplayMatrix) {
  const std::string base = dir_ + "/base.mp4";
  ffmpeg("-f lavfi -i testsrc2=s=128x96:r=25:d=0.8 " + std::string(kLossless) + " " + base);
  const DecodedVideo plain = decode_video(base);
  for (int tag : {90, 180, 270}) {
    SCOPED_TRACE(tag);
    const std::string path = dir_ + "/r" + std::to_string(tag) + ".mp4";
    ffmpeg("-i " + base + " -c copy -metadata:s:v rotate=" + std::to_string(tag) + " " + path);
    const DecodedVideo v = decode_video(path);
    const bool swapped = tag != 180;
    EXPECT_EQ(v.sync.width, swapped ? 96 : 128);
    // ffprobe's "rotation" is counter-clockwise; ffmpeg's autorotation displays it.
    const int ccw =
        std::stoi(capture("ffprobe -v error -select_streams v:0 -show_entries "
                          "stream_side_data=rotation -of csv=p=0 " +
                          path));
    EXPECT_EQ(v.info.rotation_cw, ((-ccw) % 360 + 360) % 360);
    const std::string ref = ffmpeg_rgb(path);  // autorotated by the CLI
    ASSERT_EQ(ref.size() % v.sync.frame_bytes(), 0u);
    for (int i = 0; i < v.sync.count; i += 7) {
      const size_t src = size_t(v.sync.source_index[size_t(i)]);
      EXPECT_LE(max_diff(v.sync.frame(i),
                         reinterpret_cast<const uint8_t*>(ref.data()) + src * v.sync.frame_bytes(),
                         v.sync.frame_bytes()),
                0);
    }
    DecodeOptions ignore;
    ignore.rotation = Rotation::kIgnore;  // the reference's coded orientation
    const DecodedVideo raw = decode_video(path, ignore);
    EXPECT_EQ(raw.sync.rgb, plain.sync.rgb);
  }
}

TEST_F(MediaDecode, ColorMatrixFromFileUsesTags) {
  const std::string path = dir_ + "/bt709.mp4";
  ffmpeg(
      "-f lavfi -i testsrc2=s=128x96:r=25:d=0.8 -vf scale=out_color_matrix=bt709 "
      "-color_primaries bt709 -color_trc bt709 -colorspace bt709 " +
      std::string(kLossless) + " " + path);
  DecodeOptions o;
  o.color = ColorMatrix::kFromFile;
  const DecodedVideo tagged = decode_video(path, o);
  const DecodedVideo ref = decode_video(path);
  EXPECT_NE(tagged.sync.rgb, ref.sync.rgb);  // the reference ignores the BT.709 tag
  // ffmpeg's scale filter honours the tag: kFromFile should agree with it.
  const std::string cli = ffmpeg_rgb(path);
  const size_t src = size_t(tagged.sync.source_index[0]);
  EXPECT_LE(max_diff(tagged.sync.frame(0),
                     reinterpret_cast<const uint8_t*>(cli.data()) + src * tagged.sync.frame_bytes(),
                     tagged.sync.frame_bytes()),
            2);
}

// --- bad input ---------------------------------------------------------------------------------

struct Failure {
  ErrorKind kind;
  std::string message;
};
Failure failure_of(const std::string& path, const DecodeOptions& o = {}) {
  try {
    decode_video(path, o);
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  return {ErrorKind::kInternal, "no error"};
}

void expect_failure(const Failure& f, ErrorKind kind, const std::string& fragment) {
  EXPECT_EQ(int(f.kind), int(kind)) << f.message;
  EXPECT_NE(f.message.find(fragment), std::string::npos) << f.message;
  EXPECT_EQ(f.message.find('\n'), std::string::npos) << f.message;
}

TEST_F(MediaDecode, TooShortClip) {
  ffmpeg(index_source("25", 0.5) + " " + kLossless + " " + dir_ + "/short.mp4");
  expect_failure(failure_of(dir_ + "/short.mp4"), ErrorKind::kInvalidInput,
                 "clip too short: needs at least 0.64 s");
}

TEST_F(MediaDecode, BadFilesFailCleanly) {
  ffmpeg("-f lavfi -i sine=d=1 -c:a aac " + dir_ + "/audio.m4a");
  expect_failure(failure_of(dir_ + "/audio.m4a"), ErrorKind::kInvalidInput, "no video stream");

  test::media::write_file(dir_ + "/empty.mp4", "");
  expect_failure(failure_of(dir_ + "/empty.mp4"), ErrorKind::kInvalidInput, "is empty");

  std::mt19937 rng(5);
  std::string noise(65536, '\0');
  for (char& c : noise) c = char(rng());
  test::media::write_file(dir_ + "/noise.mp4", noise);
  const Failure n = failure_of(dir_ + "/noise.mp4");
  EXPECT_TRUE(n.kind == ErrorKind::kInvalidInput || n.kind == ErrorKind::kUnsupported) << n.message;

  expect_failure(failure_of(dir_ + "/missing.mp4"), ErrorKind::kNotFound, "missing.mp4");
  expect_failure(failure_of(dir_), ErrorKind::kInvalidInput, "not a regular file");
}

TEST_F(MediaDecode, TruncatedFiles) {
  // MP4 with the index at the end, cut in half: no index, nothing to decode.
  ffmpeg(index_source("25", 3) + " " + kLossless + " " + dir_ + "/full.mp4");
  std::string bytes = test::media::read_file(dir_ + "/full.mp4");
  test::media::write_file(dir_ + "/cut.mp4", bytes.substr(0, bytes.size() / 2));
  expect_failure(failure_of(dir_ + "/cut.mp4"), ErrorKind::kInvalidInput, "cut.mp4");
  // Matroska cut in half: the frames that are there are used.
  ffmpeg(index_source("25", 3) + " " + kLossless + " " + dir_ + "/full.mkv");
  bytes = test::media::read_file(dir_ + "/full.mkv");
  test::media::write_file(dir_ + "/cut.mkv", bytes.substr(0, bytes.size() / 2));
  const DecodedVideo v = decode_video(dir_ + "/cut.mkv");
  EXPECT_GT(v.sync.count, 16);
  EXPECT_LT(v.sync.count, 75);
  for (int i = 0; i < v.sync.count; ++i)
    EXPECT_EQ(read_index(v.sync.frame(i), 128), int(v.sync.source_index[size_t(i)]));
}

TEST_F(MediaDecode, CorruptedFilesFailCleanlyOrDecode) {
  // Random byte damage in the headers and in the data of MP4 and Matroska files: every outcome
  // is either frames or a foley::Error that is not an internal one (and never a crash; the
  // sanitizer build runs this too).
  for (const std::string ext : {"mp4", "mkv"}) {
    const std::string clean = dir_ + "/clean." + ext;
    ffmpeg(index_source("25", 1.5) + " -c:v libx264 -preset ultrafast -crf 20 " + clean);
    const std::string bytes = test::media::read_file(clean);
    std::mt19937 rng(11);
    for (int trial = 0; trial < 25; ++trial) {
      std::string damaged = bytes;
      const size_t region = trial % 2 ? damaged.size() : std::min<size_t>(damaged.size(), 2048);
      for (int k = 0; k < 8; ++k) damaged[rng() % region] = char(rng());
      const std::string path = dir_ + "/bad." + ext;
      test::media::write_file(path, damaged);
      try {
        decode_video(path);
      } catch (const Error& e) {
        EXPECT_NE(e.kind(), ErrorKind::kInternal) << e.what();
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
      }
    }
  }
}

TEST_F(MediaDecode, HugeDimensionsRefusedBeforeDecoding) {
  // Small files whose headers claim huge pictures: FFmpeg's own image-size check refuses the
  // first, the configured limit (8192×8192 by default) the second.
  test::media::write_file(dir_ + "/huge.y4m",
                          "YUV4MPEG2 W20000 H20000 F25:1 C420jpeg\nFRAME\n" + std::string(64, 'x'));
  const Failure huge = failure_of(dir_ + "/huge.y4m");
  EXPECT_NE(huge.message.find("20000x20000"), std::string::npos) << huge.message;
  EXPECT_NE(huge.kind, ErrorKind::kInternal);
  test::media::write_file(dir_ + "/big.y4m",
                          "YUV4MPEG2 W9000 H9000 F25:1 C420jpeg\nFRAME\n" + std::string(64, 'x'));
  expect_failure(failure_of(dir_ + "/big.y4m"), ErrorKind::kUnsupported,
                 "9000x9000 exceeds the 8192x8192 limit");
  // A real (small) clip above a configured limit.
  ffmpeg(index_source("25", 1) + " " + kLossless + " " + dir_ + "/c.mp4");
  DecodeOptions o;
  o.limits.max_width = 100;
  expect_failure(failure_of(dir_ + "/c.mp4", o), ErrorKind::kUnsupported, "128x96 exceeds");
}

// A GIF whose logical screen is w×h and whose `frames` frames each paint one pixel, `delay_cs`
// hundredths of a second apart: a few hundred bytes that decode into full-canvas pictures.
std::string canvas_gif(int w, int h, int frames, int delay_cs) {
  auto u16 = [](int v) { return std::string{char(v & 0xFF), char((v >> 8) & 0xFF)}; };
  std::string b = "GIF89a" + u16(w) + u16(h) + std::string("\x80\x00\x00", 3) +
                  std::string("\x00\x00\x00\xff\xff\xff", 6);
  b += std::string("\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00", 19);
  for (int i = 0; i < frames; ++i) {
    b += std::string("\x21\xf9\x04\x00", 4) + u16(delay_cs) + std::string("\x00\x00", 2);
    b += "\x2c" + u16(0) + u16(0) + u16(1) + u16(1) + std::string("\x00", 1);
    b += std::string("\x02\x02\x44\x01\x00", 5);  // LZW: clear, index 0, end
  }
  return b + "\x3b";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST_F(MediaDecode, HugeCanvasGifIsRefusedBeforeDecoding) {
  // 269 bytes, 8000x8000: 64 megapixels per frame, over the 36 MP default. Before the limit this
  // held a worker for 17 s per second of clip.
  const std::string path = dir_ + "/canvas.gif";
  test::media::write_file(path, canvas_gif(8000, 8000, 10, 10));
  // Stream analysis does not allocate the canvas either (the decoders' pixel cap), so the size is
  // refused in the decoder's words.
  auto t0 = std::chrono::steady_clock::now();
  expect_failure(failure_of(path), ErrorKind::kInvalidInput,
                 "could not decode any video frame (gif, 10 packets, 10 rejected): Picture size "
                 "8000x8000 exceeds specified max pixel count 36000000");
  EXPECT_LT(seconds_since(t0), 0.5);
  t0 = std::chrono::steady_clock::now();
  try {
    probe_video(path);
    ADD_FAILURE() << "probe_video accepted an 8000x8000 GIF";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput) << e.what();
    EXPECT_NE(std::string(e.what()).find("8000x8000"), std::string::npos) << e.what();
  }
  EXPECT_LT(seconds_since(t0), 0.5);
}

TEST_F(MediaDecode, DecodeWorkBudgetIsCheckedBeforeDecoding) {
  // 4000x4000 (16 MP, under the frame limit) at 50 fps for 15 s: about 751 frames, 12 gigapixels
  // of decoding for a 14 KB file, over the 4 Gpx budget.
  const std::string path = dir_ + "/long.gif";
  test::media::write_file(path, canvas_gif(4000, 4000, 750, 2));
  auto t0 = std::chrono::steady_clock::now();
  expect_failure(failure_of(path), ErrorKind::kInvalidInput,
                 "video too expensive to decode: 4000x4000 at 50 fps for 15 s is about 751 "
                 "frames, 12.02 gigapixels, over the 4.00 gigapixel decode budget");
  EXPECT_LT(seconds_since(t0), 0.5);
  try {
    probe_video(path);
    ADD_FAILURE() << "probe_video accepted 12 gigapixels of decoding";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decode budget"), std::string::npos) << e.what();
  }
  // A real clip against configured budgets: 128x96 at 25 fps for 2 s is 51 frames, 0.63 Mpx.
  ffmpeg(index_source("25", 2) + " " + kLossless + " " + dir_ + "/c.mp4");
  DecodeOptions o;
  o.limits.max_decode_pixels = 600'000;
  expect_failure(failure_of(dir_ + "/c.mp4", o), ErrorKind::kInvalidInput,
                 "128x96 at 25 fps for 2 s is about 51 frames");
  o.end_sec = 1;  // the estimate follows the span decoded: 26 frames fit
  EXPECT_NO_THROW(decode_video(dir_ + "/c.mp4", o));
  o = {};
  o.limits.max_decode_pixels = 700'000;
  EXPECT_NO_THROW(decode_video(dir_ + "/c.mp4", o));
  o.limits.max_frame_pixels = 10'000;
  expect_failure(failure_of(dir_ + "/c.mp4", o), ErrorKind::kInvalidInput,
                 "video frame 128x96 is 0.0 megapixels");
}

TEST(MediaLimits, DecodeWorkIsCountedWhileDecoding) {
  // For streams whose rate or duration was unknown or lied: the running sum stops them.
  MediaLimits l;
  l.max_decode_pixels = 1000;
  media::DecodeWorkCounter c(l);
  c.add(10, 50);
  c.add(10, 50);
  try {
    c.add(10, 50);
    ADD_FAILURE() << "1500 pixels passed a 1000 pixel budget";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("3 frames of 10x50"), std::string::npos) << e.what();
  }
  VideoInfo info;
  info.frame_rate = 25;
  EXPECT_EQ(media::estimated_decoded_frames(info, 15), 376);  // unknown duration: all of 15 s
  info.duration_sec = 2;
  EXPECT_EQ(media::estimated_decoded_frames(info, 15), 51);
  info.frame_rate = 0;
  EXPECT_EQ(media::estimated_decoded_frames(info, 15), 0);  // unknown rate: counted only
}

TEST_F(MediaDecode, CorruptFramesNameTheDecoderError) {
  // The container intact, every frame's payload overwritten: no picture decodes. The error says
  // so with the decoder's words instead of "clip too short ... got 0 frames".
  ffmpeg(index_source("25", 2) + " " + kLossless + " -movflags +faststart " + dir_ + "/c.mp4");
  std::string bytes = test::media::read_file(dir_ + "/c.mp4");
  const size_t mdat = bytes.find("mdat");
  ASSERT_NE(mdat, std::string::npos);
  for (size_t i = mdat + 4; i < bytes.size(); ++i) bytes[i] = char(0xFF);
  test::media::write_file(dir_ + "/corrupt.mp4", bytes);
  const Failure f = failure_of(dir_ + "/corrupt.mp4");
  expect_failure(f, ErrorKind::kInvalidInput, "could not decode any video frame (h264, ");
  EXPECT_EQ(f.message.find("too short"), std::string::npos) << f.message;
}

TEST_F(MediaDecode, IndirectionFormatsAreRefused) {
  ffmpeg(index_source("25", 1) + " " + kLossless + " " + dir_ + "/c.mp4");
  test::media::write_file(dir_ + "/list.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\n" +
                                                   dir_ + "/c.mp4\n#EXT-X-ENDLIST\n");
  expect_failure(failure_of(dir_ + "/list.m3u8"), ErrorKind::kUnsupported, "'hls' is not allowed");
  test::media::write_file(dir_ + "/list.ffconcat", "ffconcat version 1.0\nfile c.mp4\n");
  expect_failure(failure_of(dir_ + "/list.ffconcat"), ErrorKind::kUnsupported,
                 "'concat' is not allowed");
  // An image-sequence pattern is just a (missing) file name here.
  expect_failure(failure_of(dir_ + "/img%03d.png"), ErrorKind::kNotFound, "img%03d.png");
}

TEST_F(MediaDecode, LimitsAndDeadline) {
  ffmpeg(index_source("25", 2) + " " + kLossless + " " + dir_ + "/c.mp4");
  DecodeOptions o;
  o.limits.max_wall_sec = 0;
  expect_failure(failure_of(dir_ + "/c.mp4", o), ErrorKind::kUnsupported, "time limit");
  o = {};
  o.limits.max_decoded_frames = 20;
  expect_failure(failure_of(dir_ + "/c.mp4", o), ErrorKind::kUnsupported, "frame limit");
  o = {};
  o.limits.max_duration_sec = 1;
  expect_failure(failure_of(dir_ + "/c.mp4", o), ErrorKind::kUnsupported, "exceeds the 1 s limit");
  o = {};
  o.limits.max_output_bytes = 1 << 20;
  expect_failure(failure_of(dir_ + "/c.mp4", o), ErrorKind::kUnsupported, "memory limit");
}

TEST_F(MediaDecode, ProbeVideo) {
  ffmpeg(index_source("30000/1001", 2) + " -f lavfi -i sine=d=2 " + kLossless + " -c:a aac " +
         dir_ + "/av.mp4");
  const VideoInfo info = probe_video(dir_ + "/av.mp4");
  EXPECT_EQ(info.codec, "h264");
  EXPECT_EQ(info.width, 128);
  EXPECT_EQ(info.height, 96);
  EXPECT_TRUE(info.has_audio);
  EXPECT_NEAR(info.frame_rate, 30000.0 / 1001, 1e-6);
  EXPECT_NEAR(info.duration_sec, 2.0, 0.05);
  EXPECT_EQ(info.rotation_cw, 0);
}

// Throughput on a 1080p H.264 clip (10 s, 25 fps) through the whole sampling path. Run with
//   foley_tests --gtest_also_run_disabled_tests --gtest_filter='*DecodeThroughput*'
TEST_F(MediaDecode, DISABLED_DecodeThroughput1080p) {
  const std::string path = dir_ + "/1080p.mp4";
  ffmpeg(
      "-f lavfi -i testsrc2=s=1920x1080:r=25:d=10 -c:v libx264 -preset veryfast -crf 23 "
      "-pix_fmt yuv420p " +
      path);
  for (int run = 0; run < 2; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    const DecodedVideo v = decode_video(path);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("decode_video 1080p: %lld frames decoded, %d + %d sampled, %.2f s, %.1f frames/s\n",
                static_cast<long long>(v.decoded_frames), v.semantic.count, v.sync.count, s,
                v.decoded_frames / s);
  }
  const auto t0 = std::chrono::steady_clock::now();
  int64_t n = 0;
  decode_video_frames(path, {}, [&](const SampledFrame&) { ++n; });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("decode_video_frames (streaming, no stacks): %.2f s, %.1f frames/s\n", s, 250 / s);
}

}  // namespace
}  // namespace foley

#endif  // FOLEY_HAVE_FFMPEG
