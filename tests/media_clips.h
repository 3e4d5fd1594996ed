// Helpers for the media tests: test clips made with the ffmpeg CLI (or by hand as Y4M), frame
// indices burnt into the pixels, and an independent implementation of the reference's frame
// selection to compare against.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace foley::test::media {

inline bool have_ffmpeg_cli() {
  static const bool ok = run_command(
                             "ffmpeg -version >/dev/null 2>&1 && "
                             "ffprobe -version >/dev/null 2>&1") == 0;
  return ok;
}

#define FOLEY_REQUIRE_FFMPEG_CLI() \
  if (!::foley::test::media::have_ffmpeg_cli()) FOLEY_SKIP_MISSING("ffmpeg CLI not installed")

// Runs `ffmpeg -y -v error <args>`; fails the test on a non-zero exit.
inline void ffmpeg(const std::string& args) {
  std::string out;
  const int rc = run_command("ffmpeg -nostdin -y -v error " + args + " 2>&1", &out);
  ASSERT_EQ(rc, 0) << "ffmpeg " << args << "\n" << out;
}

inline std::string capture(const std::string& command) {
  std::string out;
  const int rc = run_command(command, &out);
  EXPECT_EQ(rc, 0) << command << "\n" << out;
  return out;
}

// A lavfi source whose frame N shows N in binary: 16 blocks of 16×48 pixels (8 per row, 2 rows)
// on a 128×96 picture, luma 235 for a set bit and 16 otherwise, neutral chroma. Exact under
// lossless H.264 and readable even after lossy coding.
inline std::string index_source(const std::string& rate, double seconds) {
  std::ostringstream s;
  s << "-f lavfi -i \"color=c=black:s=128x96:r=" << rate << ":d=" << seconds
    << ",format=yuv420p,geq=lum='if(bitand(N\\,pow(2\\,floor(X/16)+8*floor(Y/48)))\\,235\\,16)'"
       ":cb=128:cr=128\"";
  return s.str();
}

// Reads the index back from an RGB frame of the index pattern (128×96, unrotated).
inline int read_index(const uint8_t* rgb, int width) {
  int v = 0;
  for (int bit = 0; bit < 16; ++bit) {
    const int x = (bit % 8) * 16 + 8, y = (bit / 8) * 48 + 24;
    if (rgb[(size_t(y) * size_t(width) + size_t(x)) * 3] > 128) v |= 1 << bit;
  }
  return v;
}

// Decoded frame timestamps as ffprobe reports them, in decoding output order.
struct ProbedFrames {
  int tb_num = 0, tb_den = 1;
  std::vector<int64_t> pts;
};
inline ProbedFrames probe_frames(const std::string& path) {
  ProbedFrames p;
  const std::string tb = capture(
      "ffprobe -v error -select_streams v:0 -show_entries "
      "stream=time_base -of csv=p=0 '" +
      path + "'");
  EXPECT_EQ(std::sscanf(tb.c_str(), "%d/%d", &p.tb_num, &p.tb_den), 2) << tb;
  std::istringstream ts(
      capture("ffprobe -v error -select_streams v:0 -show_entries "
              "frame=best_effort_timestamp -of csv=p=0 '" +
              path + "'"));
  std::string line;
  while (std::getline(ts, line))
    if (!line.empty()) p.pts.push_back(std::stoll(line));
  return p;
}

// The reference rule (model-spec §1.1), written independently of the library: which source
// frame each output position takes. Times are small rationals here, so the plain double division
// is the correctly rounded one.
inline std::vector<int> reference_picks(const std::vector<int64_t>& pts, int tb_num, int tb_den,
                                        int fps, double end_sec = 15.0) {
  std::vector<int> picks;
  double next_t = 0.0;
  const double delta = 1.0 / fps;
  for (size_t i = 0; i < pts.size(); ++i) {
    const double t = double(pts[i] * tb_num) / double(tb_den);
    if (t < 0) continue;
    if (t > end_sec) break;
    while (t >= next_t) {
      picks.push_back(int(i));
      next_t += delta;
    }
  }
  return picks;
}

// Y4M written by hand (works without FFmpeg): frame i shows i like index_source (128×96).
inline void write_index_y4m(const std::string& path, int frames, const std::string& rate,
                            const std::string& chroma = "420jpeg") {
  const int w = 128, h = 96;
  std::ofstream f(path, std::ios::binary);
  f << "YUV4MPEG2 W" << w << " H" << h << " F" << rate << " Ip A1:1 C" << chroma << "\n";
  const bool c444 = chroma.rfind("444", 0) == 0;
  const size_t chroma_bytes = c444 ? size_t(w) * h : size_t(w / 2) * (h / 2);
  std::vector<uint8_t> y(size_t(w) * h), c(chroma_bytes, 128);
  for (int i = 0; i < frames; ++i) {
    for (int py = 0; py < h; ++py)
      for (int px = 0; px < w; ++px) {
        const int bit = px / 16 + 8 * (py / 48);
        y[size_t(py) * w + px] = (i >> bit) & 1 ? 235 : 16;
      }
    f << "FRAME\n";
    f.write(reinterpret_cast<const char*>(y.data()), std::streamsize(y.size()));
    f.write(reinterpret_cast<const char*>(c.data()), std::streamsize(c.size()));
    f.write(reinterpret_cast<const char*>(c.data()), std::streamsize(c.size()));
  }
}

inline std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

// Files in `dir` (to check that no temporary file is left behind).
inline std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  std::istringstream s(capture("ls -A '" + dir + "'"));
  std::string line;
  while (std::getline(s, line))
    if (!line.empty()) names.push_back(line);
  return names;
}

}  // namespace foley::test::media
