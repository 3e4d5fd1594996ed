// Frame selection, timing, orientation, Y4M and WAV: everything that works without FFmpeg.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <sstream>

#include "foley/media.h"
#include "media/common/atomic_file.h"
#include "media/common/image.h"
#include "media/common/sampling.h"
#include "media/common/wav.h"
#include "media/common/y4m.h"
#include "media_clips.h"

namespace foley {
namespace {

using media::FrameSelector;
using media::Orientation;
using media::rational_to_double;
using test::media::read_index;
using test::media::reference_picks;
using test::media::write_index_y4m;

TEST(MediaSampling, RationalToDoubleSmallOperandsIsPlainDivision) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 10000; ++i) {
    const int64_t n = int64_t(rng() % (uint64_t(1) << 53)) - (int64_t(1) << 52);
    const int64_t d = int64_t(rng() % 1000000) + 1;
    ASSERT_EQ(rational_to_double(n, d), double(n) / double(d)) << n << "/" << d;
  }
}

TEST(MediaSampling, RationalToDoubleMatchesPythonFractionForLargeOperands) {
  if (test::run_command("/usr/bin/python3 -c 1 2>/dev/null") != 0)
    FOLEY_SKIP_MISSING("no python3");
  // pts·num products beyond 2^53, where (double)(pts·num) would round first.
  std::mt19937_64 rng(7);
  std::vector<std::pair<__int128, __int128>> cases;
  std::ostringstream script;
  script << "from fractions import Fraction\n";
  for (int i = 0; i < 300; ++i) {
    const int64_t pts = int64_t(rng() >> (1 + rng() % 40)) * ((i & 1) ? -1 : 1);
    const int num = int(rng() % 100000) + 1, den = int(rng() % 2000000000) + 1;
    cases.emplace_back(__int128(pts) * num, den);
    script << "print(repr(float(Fraction(" << pts << "*" << num << "," << den << "))))\n";
  }
  // Exact ties and values around 2^53 to exercise rounding to even.
  for (int64_t k : {int64_t(1) << 53, (int64_t(1) << 53) + 1, (int64_t(1) << 54) + 2,
                    (int64_t(1) << 54) + 6, (int64_t(1) << 62) + 3}) {
    cases.emplace_back(__int128(k) * 3, 3);
    script << "print(repr(float(Fraction(" << k << "*3,3))))\n";
  }
  const std::string dir = test::temp_dir();
  test::media::write_file(dir + "/f.py", script.str());
  std::istringstream out(test::media::capture("/usr/bin/python3 " + dir + "/f.py"));
  for (const auto& [n, d] : cases) {
    std::string line;
    ASSERT_TRUE(std::getline(out, line));
    EXPECT_EQ(rational_to_double(n, d), std::strtod(line.c_str(), nullptr))
        << double(n) << "/" << double(d);
  }
}

TEST(MediaSampling, Source25fpsTimebase12800OvershootsAtFrame6) {
  // model-spec §1.1: 25 fps in time base 1/12800, sampled at 25 fps: the accumulated clock
  // overshoots frame k's time at k = 6 (and often from k = 18 on), so target k takes frame k+1.
  FrameSelector sel(8, 25, 15.0);
  std::vector<int> picks;
  for (int k = 0; k < 400; ++k) {
    const FrameSelector::Pick p = sel.offer(media::frame_time(int64_t(k) * 512, 1, 12800));
    if (p.stop) break;
    for (int i = 0; i < p.sync_count; ++i) picks.push_back(k);
  }
  ASSERT_EQ(picks.size(), 376u);
  EXPECT_EQ(picks[5], 5);
  EXPECT_EQ(picks[6], 7);
  int shifted = 0;
  for (int k = 0; k < 376; ++k) shifted += picks[size_t(k)] != k;
  EXPECT_GT(shifted, 150);
  EXPECT_EQ(sel.semantic_count(), 121);
  EXPECT_EQ(sel.max_sync(), 376);
  EXPECT_EQ(sel.max_semantic(), 121);
}

TEST(MediaSampling, SelectorMatchesIndependentRuleOnIrregularTimes) {
  std::mt19937 rng(3);
  std::vector<int64_t> pts;
  int64_t t = -3000;  // starts before 0: those frames are skipped
  for (int i = 0; i < 3000; ++i) pts.push_back(t += int64_t(rng() % 90) + 1);
  for (int fps : {8, 25}) {
    const std::vector<int> want = reference_picks(pts, 1, 1000, fps);
    FrameSelector sel(fps, fps, 15.0);
    std::vector<int> got;
    for (size_t i = 0; i < pts.size(); ++i) {
      const FrameSelector::Pick p = sel.offer(media::frame_time(pts[i], 1, 1000));
      if (p.stop) break;
      for (int k = 0; k < p.sync_count; ++k) got.push_back(int(i));
    }
    EXPECT_EQ(got, want) << fps;
  }
}

TEST(MediaSampling, SelectorLateFirstFrameRepeatsIt) {
  FrameSelector sel(8, 25, 15.0);
  const FrameSelector::Pick p = sel.offer(1.0);  // e.g. an MPEG-TS start time
  EXPECT_EQ(p.sync_first, 0);
  int want = 0;
  for (double next = 0; next <= 1.0; next += 1.0 / 25) ++want;
  EXPECT_EQ(p.sync_count, want);  // every target up to 1.0 s takes this frame
  EXPECT_GE(want, 25);
  EXPECT_EQ(p.semantic_count, 9);
  EXPECT_TRUE(sel.offer(15.0001).stop);
}

TEST(MediaSampling, SelectorRejectsBadRates) {
  EXPECT_THROW(FrameSelector(0, 25, 15), Error);
  EXPECT_THROW(FrameSelector(8, NAN, 15), Error);
  EXPECT_THROW(FrameSelector(8, 25, -1), Error);
  EXPECT_THROW(FrameSelector(8, 25, 1e9), Error);
}

TEST(MediaSampling, ClipTimingFollowsFloat64Truncation) {
  const std::set<int> minus_one = {29,  57,  58,  113, 114, 115, 116, 201, 203,
                                   205, 207, 226, 228, 230, 232, 251, 253, 255};
  for (int t = 16; t <= 376; ++t) {
    const ClipTiming c = clip_timing(t);
    const int want = minus_one.count(t) ? 2 * t - 1 : 2 * t;
    ASSERT_EQ(c.latent_frames, want) << t;
    EXPECT_EQ(c.sync_segments, (t - 16) / 8 + 1);
    EXPECT_EQ(c.audio_samples, int64_t(want) * 960);
  }
  // model-spec §1.6 table.
  EXPECT_EQ(clip_timing(125).latent_frames, 250);
  EXPECT_EQ(clip_timing(125).sync_segments, 14);
  EXPECT_EQ(clip_timing(250).sync_segments, 30);
  EXPECT_EQ(clip_timing(376).latent_frames, 752);
  EXPECT_EQ(clip_timing(376).audio_samples, 721920);
  EXPECT_EQ(clip_timing(376).sync_segments, 46);
  try {
    clip_timing(15);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("clip too short: needs at least 0.64 s"),
              std::string::npos);
  }
}

// 3×2 picture with distinct pixels; returns the pixel ids after orientation.
std::vector<int> orient_ids(Orientation o, int* ow, int* oh) {
  const int w = 3, h = 2;
  std::vector<uint8_t> src(w * h * 3), dst(w * h * 3);
  for (int i = 0; i < w * h; ++i) src[size_t(i) * 3] = uint8_t(i);
  media::orient_rgb24(src.data(), w, h, w * 3, o, dst.data());
  *ow = o.out_width(w, h);
  *oh = o.out_height(w, h);
  std::vector<int> ids;
  for (int i = 0; i < w * h; ++i) ids.push_back(dst[size_t(i) * 3]);
  return ids;
}

TEST(MediaImage, OrientationRotatesAndMirrors) {
  // Source:   0 1 2
  //           3 4 5
  int w, h;
  Orientation cw90{true, true, false};
  EXPECT_EQ(orient_ids(cw90, &w, &h), (std::vector<int>{3, 0, 4, 1, 5, 2}));
  EXPECT_EQ(w, 2);
  EXPECT_EQ(cw90.rotation_cw(), 90);
  Orientation cw180{false, true, true};
  EXPECT_EQ(orient_ids(cw180, &w, &h), (std::vector<int>{5, 4, 3, 2, 1, 0}));
  EXPECT_EQ(cw180.rotation_cw(), 180);
  Orientation cw270{true, false, true};
  EXPECT_EQ(orient_ids(cw270, &w, &h), (std::vector<int>{2, 5, 1, 4, 0, 3}));
  EXPECT_EQ(cw270.rotation_cw(), 270);
  EXPECT_FALSE(cw270.mirrored());
  Orientation mirror{false, true, false};
  EXPECT_EQ(orient_ids(mirror, &w, &h), (std::vector<int>{2, 1, 0, 5, 4, 3}));
  EXPECT_TRUE(mirror.mirrored());
  EXPECT_EQ(mirror.rotation_cw(), 0);
}

TEST(MediaImage, DisplayMatrixToOrientation) {
  // av_display_rotation_set(m, θ): a = d = cos θ, b = −sin θ, c = sin θ (θ counter-clockwise).
  auto matrix = [](int a, int b, int c, int d) {
    std::array<int32_t, 9> m{a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30};
    return m;
  };
  EXPECT_TRUE(media::orientation_from_display_matrix(matrix(1, 0, 0, 1).data()).identity());
  EXPECT_EQ(media::orientation_from_display_matrix(matrix(0, -1, 1, 0).data()).rotation_cw(),
            270);  // 90° counter-clockwise
  EXPECT_EQ(media::orientation_from_display_matrix(matrix(0, 1, -1, 0).data()).rotation_cw(), 90);
  EXPECT_EQ(media::orientation_from_display_matrix(matrix(-1, 0, 0, -1).data()).rotation_cw(), 180);
  const Orientation flip = media::orientation_from_display_matrix(matrix(-1, 0, 0, 1).data());
  EXPECT_TRUE(flip.mirrored());
  // 45°: left alone.
  std::array<int32_t, 9> m45{46341, 46341, 0, -46341, 46341, 0, 0, 0, 1 << 30};
  EXPECT_TRUE(media::orientation_from_display_matrix(m45.data()).identity());
}

TEST(MediaImage, Bt601LimitedRangeReferencePoints) {
  // Limited-range white, black and a saturated red/blue through swscale's BT.601 table.
  const uint8_t y[4] = {235, 16, 82, 41};
  const uint8_t u[4] = {128, 128, 90, 240};
  const uint8_t v[4] = {128, 128, 240, 110};
  uint8_t rgb[12];
  media::yuv_to_rgb24(y, u, v, 4, 1, media::ChromaLayout::k444, false, rgb);
  EXPECT_EQ(rgb[0], 255);
  EXPECT_EQ(rgb[1], 255);
  EXPECT_EQ(rgb[3], 0);
  EXPECT_NEAR(rgb[6], 255, 1);  // red
  EXPECT_NEAR(rgb[7], 0, 1);
  EXPECT_NEAR(rgb[11], 255, 1);  // blue
}

TEST(MediaY4m, ParsesHeaderVariants) {
  const std::string dir = test::temp_dir();
  for (const std::string c : {"420jpeg", "420mpeg2", "420paldv", "444"}) {
    write_index_y4m(dir + "/a.y4m", 3, "30000:1001", c);
    media::Y4mReader r(dir + "/a.y4m", {});
    EXPECT_EQ(r.header().width, 128);
    EXPECT_EQ(r.header().fps_num, 30000);
    EXPECT_EQ(r.header().fps_den, 1001);
    std::vector<uint8_t> planes;
    int frames = 0;
    while (r.next_frame(planes)) ++frames;
    EXPECT_EQ(frames, 3) << c;
  }
}

TEST(MediaY4m, RejectsBadAndHugeHeaders) {
  const std::string dir = test::temp_dir();
  auto kind_of = [&](const std::string& bytes) {
    test::media::write_file(dir + "/b.y4m", bytes);
    try {
      media::Y4mReader r(dir + "/b.y4m", {});
      return std::string("ok");
    } catch (const Error& e) {
      return std::string(e.kind() == ErrorKind::kUnsupported ? "unsupported: " : "invalid: ") +
             e.what();
    }
  };
  EXPECT_NE(kind_of("YUV4MPEG2 W20000 H20000 F25:1 C420jpeg\nFRAME\n")
                .find("unsupported: "
                      "resolution 20000x"),
            std::string::npos);
  EXPECT_EQ(kind_of("YUV4MPEG2 H10 F25:1\n").rfind("invalid", 0), 0u);
  EXPECT_EQ(kind_of("YUV4MPEG2 W10 H10 C420p10\n").rfind("unsupported", 0), 0u);
  EXPECT_EQ(kind_of("RIFF....").rfind("invalid", 0), 0u);
  EXPECT_EQ(kind_of("YUV4MPEG2 W10 H10 Fx\n").rfind("invalid", 0), 0u);
  EXPECT_EQ(
      kind_of(std::string("YUV4MPEG2 W10 H10") + std::string(5000, ' ') + "\n").rfind("invalid", 0),
      0u);
}

// decode_video on a hand-written Y4M: the same in both builds (libavformat or the Y4M reader).
TEST(MediaY4m, DecodeVideoPicksReferenceFrames) {
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/idx.y4m";
  write_index_y4m(path, 75, "30000:1001");  // 2.5 s at 29.97 fps
  const DecodedVideo v = decode_video(path);
  std::vector<int64_t> pts(75);
  for (int i = 0; i < 75; ++i) pts[size_t(i)] = i;
  const std::vector<int> want8 = reference_picks(pts, 1001, 30000, 8);
  const std::vector<int> want25 = reference_picks(pts, 1001, 30000, 25);
  ASSERT_EQ(v.semantic.count, int(want8.size()));
  ASSERT_EQ(v.sync.count, int(want25.size()));
  for (int i = 0; i < v.sync.count; ++i) {
    EXPECT_EQ(read_index(v.sync.frame(i), 128), want25[size_t(i)]) << i;
    EXPECT_EQ(v.sync.source_index[size_t(i)], want25[size_t(i)]);
  }
  for (int i = 0; i < v.semantic.count; ++i)
    EXPECT_EQ(read_index(v.semantic.frame(i), 128), want8[size_t(i)]) << i;
  EXPECT_EQ(v.timing.sync_frames, v.sync.count);
  EXPECT_EQ(v.info.width, 128);
  // Pixels: limited-range 235/16 luma with neutral chroma are RGB 255/0.
  const uint8_t* last = v.sync.frame(v.sync.count - 1);
  for (size_t i = 0; i < v.sync.frame_bytes(); ++i)
    ASSERT_TRUE(last[i] == 0 || last[i] == 255) << int(last[i]);
}

TEST(MediaY4m, TooShortAndCappedClips) {
  const std::string dir = test::temp_dir();
  write_index_y4m(dir + "/short.y4m", 15, "25:1");  // 0.6 s: T25 = 15
  try {
    decode_video(dir + "/short.y4m");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kInvalidInput);
    EXPECT_NE(std::string(e.what()).find("clip too short"), std::string::npos);
  }
  write_index_y4m(dir + "/long.y4m", 20 * 4, "4:1");  // 20 s at 4 fps, little data
  const DecodedVideo v = decode_video(dir + "/long.y4m");
  EXPECT_EQ(v.sync.count, 376);
  EXPECT_EQ(v.semantic.count, 121);
  EXPECT_EQ(v.timing.latent_frames, 752);
  EXPECT_EQ(read_index(v.sync.frame(375), 128), 60);  // the frame at exactly 15.0 s
  EXPECT_LE(v.decoded_frames, 62);                    // stopped at the first frame after 15 s
}

TEST(MediaY4m, LimitsAreEnforced) {
  const std::string dir = test::temp_dir();
  write_index_y4m(dir + "/a.y4m", 50, "25:1");
  DecodeOptions o;
  o.limits.max_decoded_frames = 10;
  EXPECT_THROW(decode_video(dir + "/a.y4m", o), Error);
  o = {};
  o.limits.max_output_bytes = 128 * 96 * 3 * 20;
  try {
    decode_video(dir + "/a.y4m", o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("memory limit"), std::string::npos);
  }
  o = {};
  o.limits.max_width = 64;
  EXPECT_THROW(decode_video(dir + "/a.y4m", o), Error);
}

TEST(MediaY4m, StreamingSinkSeesEachSourceFrameOnce) {
  const std::string dir = test::temp_dir();
  write_index_y4m(dir + "/a.y4m", 30, "10:1");  // 3 s at 10 fps: repeats at 25 fps
  std::vector<int64_t> seen;
  int sync_total = 0;
  const SamplingResult r = decode_video_frames(dir + "/a.y4m", {}, [&](const SampledFrame& f) {
    seen.push_back(f.source_index);
    EXPECT_EQ(f.sync_first, sync_total);
    sync_total += f.sync_count;
    EXPECT_EQ(read_index(f.rgb, f.width), int(f.source_index));
  });
  EXPECT_EQ(sync_total, r.sync_frames);
  EXPECT_EQ(int(seen.size()), 30);
  EXPECT_EQ(r.sync_frames, 73);  // last frame at 2.9 s; targets 0 .. 2.88
}

TEST(MediaAudio, WavFloatRoundTripAndStereo) {
  const std::string dir = test::temp_dir();
  std::vector<float> x(4800);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(std::sin(i * 0.01) * 0.9);
  write_audio(dir + "/a.wav", x.data(), x.size());
  AudioData a = read_audio(dir + "/a.wav");
  EXPECT_EQ(a.sample_rate, 48000);
  EXPECT_EQ(a.channels, 1);
  EXPECT_EQ(a.samples, x);
  AudioWriteOptions o;
  o.channels = 2;
  o.format = AudioFormat::kWavS16;
  write_audio(dir + "/b.wav", x.data(), x.size(), o);
  a = read_audio(dir + "/b.wav");
  ASSERT_EQ(a.channels, 2);
  ASSERT_EQ(a.samples.size(), 2 * x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(a.samples[2 * i], a.samples[2 * i + 1]);
    EXPECT_NEAR(a.samples[2 * i], x[i], 2.0 / 32767);  // 32767 written, 32768 read
  }
  EXPECT_EQ(test::media::list_dir(dir).size(), 2u);  // no temporary files left
}

TEST(MediaAudio, ClipsNonFiniteAndOutOfRangeSamples) {
  EXPECT_EQ(media::to_s16(2.f), 32767);
  EXPECT_EQ(media::to_s16(-2.f), -32767);
  EXPECT_EQ(media::to_s16(NAN), 0);
  EXPECT_EQ(media::to_s24(1.f), 8388607);
}

// 16-bit PCM WAV is what Python's `wave` module (and older players) can read: it reads back
// exactly round(clamp(x) · 32767) (float32 product, nearest with ties to even, no dither).
TEST(MediaAudio, WavS16ReadByPythonWave) {
  const std::string py = FOLEY_PYTHON;
  if (test::run_command(py + " -c 'import wave, numpy' 2>/dev/null") != 0)
    FOLEY_SKIP_MISSING(py + " with numpy not available");
  const std::string dir = test::temp_dir();
  std::vector<float> x(4000);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.2f, 1.2f);
  for (float& v : x) v = u(rng);
  x[0] = 0.f, x[1] = 1.f, x[2] = -1.f, x[3] = NAN;
  AudioWriteOptions o;
  o.format = AudioFormat::kWavS16;
  write_audio(dir + "/s16.wav", x.data(), x.size(), o);
  std::string out;
  const std::string cmd = py + " -c \"import wave, sys; w = wave.open(sys.argv[1]); "
                               "print(w.getnchannels(), w.getsampwidth(), w.getframerate(), "
                               "w.getnframes()); sys.stdout.buffer.write(w.readframes(-1))\" " +
                          dir + "/s16.wav > " + dir + "/out.txt";
  ASSERT_EQ(test::run_command(cmd, &out), 0) << out;
  const std::string got = test::media::read_file(dir + "/out.txt");
  const size_t nl = got.find('\n');
  ASSERT_NE(nl, std::string::npos);
  EXPECT_EQ(got.substr(0, nl), "1 2 48000 4000");
  ASSERT_EQ(got.size() - nl - 1, 2 * x.size());
  const auto* p = reinterpret_cast<const uint8_t*>(got.data() + nl + 1);
  for (size_t i = 0; i < x.size(); ++i) {
    const int16_t s = int16_t(p[2 * i] | p[2 * i + 1] << 8);
    const float c = x[i] != x[i] ? 0.f : std::clamp(x[i], -1.f, 1.f);
    ASSERT_EQ(s, int16_t(std::nearbyint(c * 32767.f))) << i << ": " << x[i];
  }
  EXPECT_EQ(int16_t(p[2] | p[3] << 8), 32767);
  EXPECT_EQ(int16_t(p[4] | p[5] << 8), -32767);
}

TEST(MediaAudio, WriteAudioCountsClippedSamples) {
  const std::string dir = test::temp_dir();
  const float x[8] = {0.f, 1.f, -1.f, 1.0001f, -3.f, INFINITY, -INFINITY, NAN};
  AudioWriteOptions o;
  o.format = AudioFormat::kWavS16;
  o.channels = 2;  // counted per input sample, not per channel
  AudioWriteStats s = write_audio(dir + "/s16.wav", x, 8, o);
  EXPECT_EQ(s.clipped, 4);  // 1.0001, -3, inf, -inf; exactly ±1 is in range
  EXPECT_EQ(s.non_finite, 1);
  const AudioData a = read_audio(dir + "/s16.wav");
  ASSERT_EQ(a.samples.size(), 16u);
  EXPECT_EQ(a.samples[2 * 3], 32767 / 32768.f);
  EXPECT_EQ(a.samples[2 * 4], -32767 / 32768.f);
  // Float WAV keeps out-of-range values: nothing clipped, NaN and ±inf written as 0.
  s = write_audio(dir + "/f32.wav", x, 8);
  EXPECT_EQ(s.clipped, 0);
  EXPECT_EQ(s.non_finite, 3);
  EXPECT_EQ(read_audio(dir + "/f32.wav").samples[4], -3.f);
  s = write_audio(dir + "/ok.wav", x, 3, o);
  EXPECT_EQ(s.clipped, 0);
  EXPECT_EQ(s.non_finite, 0);
}

TEST(MediaAudio, AtomicWriteLeavesNothingOnFailure) {
  const std::string dir = test::temp_dir();
  const float x[3] = {0, 0.5f, -0.5f};
  EXPECT_THROW(write_audio(dir + "/missing/a.wav", x, 3), Error);
  AudioWriteOptions bad;
  bad.channels = 3;
  EXPECT_THROW(write_audio(dir + "/a.wav", x, 3, bad), Error);
  EXPECT_TRUE(test::media::list_dir(dir).empty());
  {
    test::media::write_file(dir + "/old.wav", "old");
    media::AtomicFile f(dir + "/old.wav");
    f.write("new", 3);
    EXPECT_EQ(test::media::list_dir(dir).size(), 2u);
  }  // destroyed without commit: the old file stays, the temporary one is gone
  EXPECT_EQ(test::media::read_file(dir + "/old.wav"), "old");
  EXPECT_EQ(test::media::list_dir(dir).size(), 1u);
  write_audio(dir + "/old.wav", x, 3);  // replaces it
  EXPECT_EQ(read_audio(dir + "/old.wav").samples.size(), 3u);
}

TEST(MediaAudio, FormatFromPath) {
  EXPECT_EQ(audio_format_for_path("x/y.WAV"), AudioFormat::kWavF32);
  EXPECT_EQ(audio_format_for_path("y.flac"), AudioFormat::kFlac24);
  EXPECT_THROW(audio_format_for_path("y.mp3"), Error);
}

TEST(MediaAudio, WithoutFfmpegFlacAndMuxAreUnsupported) {
  // Not a missing tool: this test is about builds without FFmpeg, so it is skipped on one with it.
  if (media_has_ffmpeg()) GTEST_SKIP() << "FFmpeg build";
  const std::string dir = test::temp_dir();
  const float x[2] = {0, 0};
  AudioWriteOptions o;
  o.format = AudioFormat::kFlac16;
  try {
    write_audio(dir + "/a.flac", x, 2, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
  }
  try {
    mux_audio(dir + "/v.mp4", x, 2, 48000, dir + "/o.mp4");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("built without FFmpeg"), std::string::npos);
  }
  test::media::write_file(dir + "/v.mp4", "not y4m");
  EXPECT_THROW(decode_video(dir + "/v.mp4"), Error);
  EXPECT_TRUE(test::media::list_dir(dir).size() == 1);
}

}  // namespace
}  // namespace foley
