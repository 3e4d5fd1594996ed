// A reader for raw YUV4MPEG2 (.y4m) video: the input format of builds without FFmpeg, and a
// format whose frame times are known exactly (frame i at i · F_den / F_num seconds).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "foley/media.h"
#include "media/common/image.h"

namespace foley::media {

struct Y4mHeader {
  int width = 0;
  int height = 0;
  int fps_num = 25;  // F tag; FFmpeg also assumes 25:1 when it is missing
  int fps_den = 1;
  ChromaLayout chroma = ChromaLayout::k420;
  bool has_alpha = false;   // C444alpha: a fourth plane, ignored
  bool full_range = false;  // XCOLORRANGE=FULL
  std::string chroma_tag = "420jpeg";
  size_t frame_bytes = 0;  // payload after each FRAME line
};

// True if the file starts with the YUV4MPEG2 signature.
bool is_y4m_file(const std::string& path);

class Y4mReader {
 public:
  // Parses the stream header; throws kInvalidInput / kUnsupported naming the problem.
  Y4mReader(const std::string& path, const MediaLimits& limits);
  const Y4mHeader& header() const { return header_; }
  // Reads the next frame's planes into `planes` (Y, then U, V, [A]); false at a clean end of
  // file. A truncated frame ends the stream too (like FFmpeg's demuxer, which drops it).
  bool next_frame(std::vector<uint8_t>& planes);
  // Pointers into `planes` for yuv_to_rgb24.
  const uint8_t* plane(const std::vector<uint8_t>& planes, int index) const;

 private:
  struct FileCloser {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, FileCloser> file_;
  Y4mHeader header_;
  size_t luma_bytes_ = 0, chroma_bytes_ = 0;
};

}  // namespace foley::media
