#include "media/common/y4m.h"

#include <cerrno>
#include <cstring>
#include <limits>

#include "core/check.h"

namespace foley::media {
namespace {

constexpr char kMagic[] = "YUV4MPEG2";
constexpr size_t kMaxHeaderLine = 4096;

// Reads one '\n'-terminated line of at most kMaxHeaderLine bytes; false at EOF before any byte.
bool read_line(std::FILE* f, std::string& line) {
  line.clear();
  int c;
  while ((c = std::fgetc(f)) != EOF) {
    if (c == '\n') return true;
    if (line.size() >= kMaxHeaderLine)
      throw Error(ErrorKind::kInvalidInput, "y4m: header line longer than 4096 bytes");
    line.push_back(static_cast<char>(c));
  }
  if (line.empty()) return false;
  throw Error(ErrorKind::kInvalidInput, "y4m: file ends inside a header line");
}

bool parse_int(const std::string& s, int& out) {
  if (s.empty() || s.size() > 9) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

void parse_ratio(const std::string& s, int& num, int& den) {
  const size_t colon = s.find(':');
  if (colon == std::string::npos || !parse_int(s.substr(0, colon), num) ||
      !parse_int(s.substr(colon + 1), den))
    throw make_error(ErrorKind::kInvalidInput, "y4m: bad frame rate '%s'", s.c_str());
}

}  // namespace

bool is_y4m_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char buf[sizeof kMagic - 1];
  const bool ok =
      std::fread(buf, 1, sizeof buf, f) == sizeof buf && std::memcmp(buf, kMagic, sizeof buf) == 0;
  std::fclose(f);
  return ok;
}

Y4mReader::Y4mReader(const std::string& path, const MediaLimits& limits) {
  file_.reset(std::fopen(path.c_str(), "rb"));
  if (!file_)
    throw make_error(errno == ENOENT ? ErrorKind::kNotFound : ErrorKind::kInvalidInput,
                     "cannot open '%s': %s", path.c_str(), std::strerror(errno));
  std::string line;
  if (!read_line(file_.get(), line) || line.compare(0, sizeof kMagic - 1, kMagic) != 0)
    throw Error(ErrorKind::kInvalidInput, "y4m: missing YUV4MPEG2 signature");
  Y4mHeader& h = header_;
  size_t pos = sizeof kMagic - 1;
  while (pos < line.size()) {
    if (line[pos] == ' ') {
      ++pos;
      continue;
    }
    size_t end = line.find(' ', pos);
    if (end == std::string::npos) end = line.size();
    const char tag = line[pos];
    const std::string value = line.substr(pos + 1, end - pos - 1);
    pos = end;
    switch (tag) {
      case 'W':
        if (!parse_int(value, h.width)) throw Error(ErrorKind::kInvalidInput, "y4m: bad width");
        break;
      case 'H':
        if (!parse_int(value, h.height)) throw Error(ErrorKind::kInvalidInput, "y4m: bad height");
        break;
      case 'F':
        parse_ratio(value, h.fps_num, h.fps_den);
        break;
      case 'C':
        h.chroma_tag = value;
        break;
      case 'X':
        if (value == "COLORRANGE=FULL") h.full_range = true;
        break;
      default:  // I (interlacing) and A (aspect) do not change the pixels
        break;
    }
  }
  if (h.width <= 0 || h.height <= 0)
    throw Error(ErrorKind::kInvalidInput, "y4m: missing or zero width/height");
  if (h.width > limits.max_width || h.height > limits.max_height)
    throw make_error(ErrorKind::kUnsupported, "resolution %dx%d exceeds the %dx%d limit", h.width,
                     h.height, limits.max_width, limits.max_height);
  if (h.fps_num <= 0 || h.fps_den <= 0) {  // FFmpeg's demuxer falls back to 25 fps as well
    h.fps_num = 25;
    h.fps_den = 1;
  }
  const std::string& c = h.chroma_tag;
  if (c == "420jpeg" || c == "420mpeg2" || c == "420paldv" || c == "420") {
    h.chroma = ChromaLayout::k420;
  } else if (c == "422") {
    h.chroma = ChromaLayout::k422;
  } else if (c == "444") {
    h.chroma = ChromaLayout::k444;
  } else if (c == "444alpha") {
    h.chroma = ChromaLayout::k444;
    h.has_alpha = true;
  } else if (c == "mono") {
    h.chroma = ChromaLayout::kGray;
  } else {
    throw make_error(ErrorKind::kUnsupported, "y4m: colour space C%s is not supported", c.c_str());
  }
  luma_bytes_ = size_t(h.width) * size_t(h.height);
  const size_t cw = h.chroma == ChromaLayout::k444 ? h.width : (h.width + 1) / 2;
  const size_t ch = h.chroma == ChromaLayout::k420 ? (h.height + 1) / 2 : h.height;
  chroma_bytes_ = h.chroma == ChromaLayout::kGray ? 0 : cw * ch;
  h.frame_bytes = luma_bytes_ + 2 * chroma_bytes_ + (h.has_alpha ? luma_bytes_ : 0);
}

bool Y4mReader::next_frame(std::vector<uint8_t>& planes) {
  std::string line;
  if (!read_line(file_.get(), line)) return false;
  if (line.compare(0, 5, "FRAME") != 0)
    throw Error(ErrorKind::kInvalidInput, "y4m: expected a FRAME header");
  planes.resize(header_.frame_bytes);
  return std::fread(planes.data(), 1, planes.size(), file_.get()) == planes.size();
}

const uint8_t* Y4mReader::plane(const std::vector<uint8_t>& planes, int index) const {
  if (index == 0) return planes.data();
  if (chroma_bytes_ == 0) return nullptr;
  return planes.data() + luma_bytes_ + size_t(index - 1) * chroma_bytes_;
}

}  // namespace foley::media
