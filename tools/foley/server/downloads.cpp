#include "downloads.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <string_view>

#include "http_errors.h"

namespace foley_server {

ResultFile open_result_locked(const Job& job, bool video) {
  const std::string& path = video ? job.video_path : job.audio_path;
  ResultFile file;
  if (path.empty()) return file;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return file;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return file;
  }
  file.fd = std::shared_ptr<int>(new int(fd), [](int* p) {
    ::close(*p);
    delete p;
  });
  file.size = int64_t(st.st_size);
  const bool flac = job.request.format == OutputFormat::kFlac;
  file.extension = video ? "mp4" : flac ? "flac" : "wav";
  file.content_type = video ? "video/mp4" : flac ? "audio/flac" : "audio/wav";
  return file;
}

namespace {

// One "bytes=" range of RFC 7233 as [first, last] within `size`; nullopt for anything else
// (several ranges, other units, bad syntax), which is then ignored: the whole file is sent.
struct ByteRange {
  int64_t first = 0, last = 0;
  bool satisfiable = true;
};

std::optional<ByteRange> parse_range(const std::string& header, int64_t size) {
  constexpr std::string_view kUnit = "bytes=";
  if (header.rfind(kUnit, 0) != 0 || header.find(',') != std::string::npos) return std::nullopt;
  const std::string spec = header.substr(kUnit.size());
  const size_t dash = spec.find('-');
  if (dash == std::string::npos) return std::nullopt;
  auto number = [](const std::string& s) -> std::optional<int64_t> {
    if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    return std::stoll(s);
  };
  const std::string a = spec.substr(0, dash), b = spec.substr(dash + 1);
  ByteRange r;
  if (a.empty()) {  // the last n bytes
    const auto n = number(b);
    if (!n) return std::nullopt;
    r.satisfiable = *n > 0 && size > 0;
    r.first = std::max<int64_t>(0, size - *n);
    r.last = size - 1;
    return r;
  }
  const auto first = number(a);
  if (!first) return std::nullopt;
  std::optional<int64_t> last = size - 1;
  if (!b.empty()) {
    last = number(b);
    if (!last || *last < *first) return std::nullopt;
  }
  r.first = *first;
  r.last = std::min(*last, size - 1);
  r.satisfiable = *first < size;
  return r;
}

}  // namespace

void serve_file(const httplib::Request& req, httplib::Response& res, const ResultFile& file,
                const std::string& download_name) {
  const int64_t size = file.size;
  int64_t offset = 0, length = size;
  if (const auto range = parse_range(req.get_header_value("Range"), size)) {
    if (!range->satisfiable) {
      res.set_header("Content-Range", "bytes */" + std::to_string(size));
      return send_error(res, 416, "invalid_input", "Range: outside the file");
    }
    offset = range->first;
    length = range->last - range->first + 1;
    res.status = 206;
    res.set_header("Content-Range", "bytes " + std::to_string(range->first) + "-" +
                                        std::to_string(range->last) + "/" + std::to_string(size));
  }
  res.set_header("Accept-Ranges", "bytes");
  res.set_header("Content-Disposition",
                 "attachment; filename=\"" + download_name + "." + file.extension + "\"");
  const std::shared_ptr<int> fd = file.fd;
  res.set_content_provider(
      size_t(length), file.content_type,
      [fd, offset](size_t at, size_t count, httplib::DataSink& sink) {
        char buf[64 << 10];
        at += size_t(offset);
        while (count > 0) {
          const ssize_t n = ::pread(*fd, buf, std::min(count, sizeof buf), off_t(at));
          if (n <= 0) return false;
          if (!sink.write(buf, size_t(n))) return false;
          at += size_t(n);
          count -= size_t(n);
        }
        return true;
      });
}

}  // namespace foley_server
