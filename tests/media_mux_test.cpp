// Audio files through FFmpeg (FLAC, reading back) and muxing generated audio into a video copy.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "foley/media.h"
#include "media_clips.h"

#ifdef FOLEY_HAVE_FFMPEG

namespace foley {
namespace {

using test::media::capture;
using test::media::ffmpeg;

std::vector<float> tone(double seconds, double hz = 440, int rate = 48000) {
  std::vector<float> x(size_t(seconds * rate));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(0.5 * std::sin(2 * M_PI * hz * i / rate));
  return x;
}

std::string probe(const std::string& args, const std::string& path) {
  std::string s = capture("ffprobe -v error " + args + " -of csv=p=0 '" + path + "'");
  while (!s.empty() && (s.back() == '\n' || s.back() == ',')) s.pop_back();
  return s;
}

// md5 of the video packets, as a stream copy writes them.
std::string video_md5(const std::string& path) {
  return capture("ffmpeg -nostdin -v error -i '" + path + "' -map 0:v -c copy -f md5 -");
}

double video_duration(const std::string& path) {
  return std::stod(probe("-select_streams v:0 -show_entries stream=duration", path));
}

class MediaMux : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::media::have_ffmpeg_cli()) FOLEY_SKIP_MISSING("ffmpeg CLI not installed");
    dir_ = test::temp_dir();
    // 2 s of H.264 with B-frames and an AAC track, like a phone clip.
    input_ = dir_ + "/in.mp4";
    ffmpeg(
        "-f lavfi -i testsrc2=s=128x96:r=25:d=2 -f lavfi -i sine=f=1000:d=2 -c:v libx264 "
        "-preset veryfast -bf 2 -pix_fmt yuv420p -c:a aac -b:a 64k " +
        input_);
  }
  std::string dir_, input_;
};

TEST_F(MediaMux, CopiesVideoAndReplacesAudio) {
  const std::string out = dir_ + "/out.mp4";
  const std::vector<float> audio = tone(1.5);  // shorter than the video: padded with silence
  mux_audio(input_, audio.data(), audio.size(), 48000, out);
  EXPECT_EQ(video_md5(out), video_md5(input_));
  EXPECT_EQ(probe("-show_entries stream=codec_type,codec_name", out), "h264,video\naac,audio");
  EXPECT_EQ(probe("-select_streams a -show_entries stream=channels,sample_rate", out), "48000,2");
  const double vdur = video_duration(input_);
  const double fdur = std::stod(probe("-show_entries format=duration", out));
  const double adur = std::stod(probe("-select_streams a -show_entries stream=duration", out));
  EXPECT_NEAR(fdur, vdur, 0.025);  // within one AAC frame
  EXPECT_NEAR(adur, vdur, 0.025);
  EXPECT_EQ(test::media::list_dir(dir_).size(), 2u);  // no temporary file left
  // The audio starts with the video: decoded (encoder delay removed) it lines up sample for
  // sample with the input, within AAC's coding error.
  const AudioData back = read_audio(out);
  ASSERT_EQ(back.channels, 2);
  double err = 0;
  for (size_t i = 2000; i < 70000; ++i)
    err = std::max(err, std::fabs(double(back.samples[2 * i]) - audio[i]));
  EXPECT_LT(err, 0.05);
}

TEST_F(MediaMux, AacBitrateIs192k) {
  std::vector<float> noise(2 * 48000);
  uint32_t r = 1;
  for (float& x : noise) x = float((r = r * 1664525u + 1013904223u) >> 8) / float(1 << 24) - 0.5f;
  const std::string out = dir_ + "/noise.mp4";
  mux_audio(input_, noise.data(), noise.size(), 48000, out);
  const double bitrate = std::stod(probe("-select_streams a -show_entries stream=bit_rate", out));
  EXPECT_NEAR(bitrate, 192000, 192000 * 0.15);
}

TEST_F(MediaMux, TrimsLongAudioAndKeepsOriginalTrackOnRequest) {
  const std::string out = dir_ + "/out.mkv";
  const std::vector<float> audio = tone(5);
  MuxOptions o;
  o.keep_original_audio = true;
  mux_audio(input_, audio.data(), audio.size(), 48000, out, o);
  EXPECT_EQ(video_md5(out), video_md5(input_));
  EXPECT_EQ(probe("-show_entries stream=codec_name", out), "h264\naac\naac");
  EXPECT_EQ(probe("-select_streams a -show_entries stream=sample_rate", out), "48000\n44100");
  EXPECT_NEAR(std::stod(probe("-show_entries format=duration", out)), video_duration(input_), 0.05);
  // The generated track is first and default.
  EXPECT_EQ(probe("-select_streams a -show_entries stream_disposition=default", out), "1\n0");
}

TEST_F(MediaMux, FlacAndOpusWhereTheContainerAllows) {
  const std::vector<float> audio = tone(2);
  struct Case {
    const char* file;
    MuxAudioCodec codec;
    const char* codec_name;
  } cases[] = {{"f.mp4", MuxAudioCodec::kFlac, "flac"},
               {"f.mkv", MuxAudioCodec::kFlac, "flac"},
               {"o.mp4", MuxAudioCodec::kOpus, "opus"},
               {"o.mkv", MuxAudioCodec::kOpus, "opus"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    MuxOptions o;
    o.codec = c.codec;
    o.channels = 1;
    const std::string out = dir_ + "/" + c.file;
    mux_audio(input_, audio.data(), audio.size(), 48000, out, o);
    EXPECT_EQ(probe("-select_streams a -show_entries stream=codec_name,channels", out),
              std::string(c.codec_name) + ",1");
    EXPECT_EQ(video_md5(out), video_md5(input_));
    // Decodes without errors.
    EXPECT_EQ(capture("ffmpeg -nostdin -v error -i '" + out + "' -f null - 2>&1"), "");
  }
}

TEST_F(MediaMux, RotationAndResampling) {
  const std::string rotated = dir_ + "/rot.mp4";
  ffmpeg("-i " + input_ + " -c copy -metadata:s:v rotate=90 " + rotated);
  const std::vector<float> audio = tone(2, 440, 16000);  // resampled to 48 kHz
  const std::string out = dir_ + "/out.mov";
  mux_audio(rotated, audio.data(), audio.size(), 16000, out);
  EXPECT_EQ(probe("-select_streams v -show_entries stream_side_data=rotation", out),
            probe("-select_streams v -show_entries stream_side_data=rotation", rotated));
  EXPECT_EQ(probe("-select_streams a -show_entries stream=sample_rate", out), "48000");
  EXPECT_EQ(video_md5(out), video_md5(rotated));
}

TEST_F(MediaMux, WebmNeedsOpus) {
  const std::string vp8 = dir_ + "/in.webm";
  ffmpeg("-f lavfi -i testsrc2=s=128x96:r=25:d=1 -c:v libvpx -deadline realtime " + vp8);
  const std::vector<float> audio = tone(1);
  try {
    mux_audio(vp8, audio.data(), audio.size(), 48000, dir_ + "/out.webm");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("webm cannot hold aac"), std::string::npos) << e.what();
  }
  MuxOptions o;
  o.codec = MuxAudioCodec::kOpus;
  mux_audio(vp8, audio.data(), audio.size(), 48000, dir_ + "/out.webm", o);
  EXPECT_EQ(video_md5(dir_ + "/out.webm"), video_md5(vp8));
  // H.264 cannot go into WebM.
  EXPECT_THROW(mux_audio(input_, audio.data(), audio.size(), 48000, dir_ + "/x.webm", o), Error);
}

TEST_F(MediaMux, FailuresLeaveNothingBehind) {
  const std::vector<float> audio = tone(1);
  test::media::write_file(dir_ + "/keep.mp4", "old");
  auto kind_of = [&](const std::string& in, const std::string& out) {
    try {
      mux_audio(in, audio.data(), audio.size(), 48000, out);
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
      return e.kind();
    }
    return ErrorKind::kInternal;
  };
  ffmpeg("-f lavfi -i sine=d=1 -c:a aac " + dir_ + "/audio.m4a");
  EXPECT_EQ(kind_of(dir_ + "/audio.m4a", dir_ + "/keep.mp4"), ErrorKind::kInvalidInput);
  EXPECT_EQ(kind_of(dir_ + "/nope.mp4", dir_ + "/keep.mp4"), ErrorKind::kNotFound);
  EXPECT_EQ(kind_of(input_, dir_ + "/keep.avi"), ErrorKind::kUnsupported);
  EXPECT_EQ(kind_of(input_, dir_ + "/missing/out.mp4"), ErrorKind::kInvalidInput);
  MuxOptions o;
  o.limits.max_wall_sec = 0;
  EXPECT_THROW(mux_audio(input_, audio.data(), audio.size(), 48000, dir_ + "/keep.mp4", o), Error);
  EXPECT_EQ(test::media::read_file(dir_ + "/keep.mp4"), "old");
  EXPECT_EQ(test::media::list_dir(dir_).size(), 3u);  // in.mp4, keep.mp4, audio.m4a
}

TEST(MediaAudioFlac, RoundTripAndStereo) {
  FOLEY_REQUIRE_FFMPEG_CLI();
  const std::string dir = test::temp_dir();
  const std::vector<float> x = tone(0.5);
  for (AudioFormat f : {AudioFormat::kFlac16, AudioFormat::kFlac24}) {
    AudioWriteOptions o;
    o.format = f;
    o.channels = 2;
    const std::string path = dir + "/a.flac";
    write_audio(path, x.data(), x.size(), o);
    EXPECT_EQ(probe("-show_entries stream=codec_name,sample_rate,channels", path), "flac,48000,2");
    const AudioData a = read_audio(path);
    ASSERT_EQ(a.channels, 2);
    ASSERT_EQ(a.samples.size(), 2 * x.size());
    const double tol = f == AudioFormat::kFlac16 ? 2.0 / 32767 : 2.0 / 8388607;
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_NEAR(a.samples[2 * i], x[i], tol) << i;
      ASSERT_EQ(a.samples[2 * i], a.samples[2 * i + 1]);
    }
  }
  EXPECT_EQ(test::media::list_dir(dir).size(), 1u);
}

TEST(MediaAudioFlac, ReadsAnyAudioAndRefusesVideoOnlyFiles) {
  FOLEY_REQUIRE_FFMPEG_CLI();
  const std::string dir = test::temp_dir();
  ffmpeg("-f lavfi -i sine=d=0.5:sample_rate=44100 -c:a libopus " + dir + "/a.ogg");
  const AudioData a = read_audio(dir + "/a.ogg");
  EXPECT_EQ(a.sample_rate, 48000);  // Opus decodes at 48 kHz
  EXPECT_NEAR(double(a.samples.size()) / a.sample_rate, 0.5, 0.03);
  ffmpeg("-f lavfi -i testsrc2=s=64x48:d=0.2 -c:v libx264 " + dir + "/v.mp4");
  EXPECT_THROW(read_audio(dir + "/v.mp4"), Error);
}

}  // namespace
}  // namespace foley

#endif  // FOLEY_HAVE_FFMPEG
