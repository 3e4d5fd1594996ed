#include "requests.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "foley/media.h"
#include "http_errors.h"
#include "http_front.h"
#include "model_specs.h"

namespace foley_server {

namespace {

constexpr size_t kMaxPromptBytes = 4096;
constexpr size_t kMaxFieldBytes = 64 << 10;  // a text part of a multipart body
constexpr size_t kMaxFields = 32;
constexpr size_t kMaxJsonBytes = 1 << 20;
// The shortest text-only audio the model makes: 16 frames at 25 fps (the library's bound).
constexpr double kMinTextSeconds = 0.64;
// A video may be this much longer than the server's limit and still be taken whole: containers
// round their durations, and a clip cut at the limit may declare a frame more.
constexpr double kDurationSlack = 0.05;

// "2", "2.5", "600": a number of seconds as the messages show it.
std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

struct Fields {
  std::map<std::string, std::string> values;  // text fields present in the request
};

ParsedRequest fail(int status, const std::string& code, const std::string& message) {
  ParsedRequest r;
  r.status = status;
  r.code = code;
  r.message = message;
  return r;
}

ParsedRequest fail(const HttpError& e) {
  ParsedRequest r = fail(e.status, e.code, e.what());
  r.retry_after = e.retry_after;
  return r;
}

// Plain decimal digits only; nullopt when malformed or out of range (never throws).
std::optional<long long> parse_int(const std::string& s) {
  if (s.empty()) return std::nullopt;
  long long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s[0] == '-' || s[0] == '+')
    return std::nullopt;
  return v;
}

std::optional<double> parse_real(const std::string& s) {
  if (s.empty() || s.size() > 32 || std::isspace(static_cast<unsigned char>(s[0])))
    return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// Validates the text fields into `out`; returns an error message naming the field, or "".
std::string apply_fields(const Fields& f, const RequestLimits& limits, JobRequest& out) {
  auto get = [&](const char* name) -> const std::string* {
    const auto it = f.values.find(name);
    return it == f.values.end() ? nullptr : &it->second;
  };
  auto& p = out.params;
  const std::string* prompt = get("prompt");
  if (!prompt) return "prompt: required field (may be empty)";
  if (prompt->size() > kMaxPromptBytes) return "prompt: longer than 4096 bytes";
  if (!is_valid_utf8(*prompt)) return "prompt: not valid UTF-8 text";
  p.prompt = *prompt;
  if (const auto* v = get("negative_prompt")) {
    if (v->size() > kMaxPromptBytes) return "negative_prompt: longer than 4096 bytes";
    if (!is_valid_utf8(*v)) return "negative_prompt: not valid UTF-8 text";
    p.negative_prompt = *v;
  }
  if (const auto* v = get("steps")) {
    const auto n = parse_int(*v);
    if (!n || *n < 1 || *n > 200) return "steps: must be an integer from 1 to 200";
    p.steps = int(*n);
  }
  if (const auto* v = get("guidance")) {
    const auto g = parse_real(*v);
    // The library's range; <= 1 disables classifier-free guidance.
    if (!g || *g < 0.0 || *g > 30.0) return "guidance: must be a number from 0 to 30";
    p.guidance = float(*g);
  }
  if (const auto* v = get("seed")) {
    if (v->empty() || v->size() > 20 || v->find_first_not_of("0123456789") != std::string::npos)
      return "seed: must be a non-negative integer below 2^64";
    errno = 0;
    const unsigned long long s = std::strtoull(v->c_str(), nullptr, 10);
    if (errno == ERANGE) return "seed: must be a non-negative integer below 2^64";
    p.seed = s;
  }
  p.max_clip_seconds = limits.max_clip_seconds;
  if (const auto* v = get("max_seconds")) {
    const auto s = parse_real(*v);
    if (!s || *s <= 0 || *s > limits.max_clip_seconds)
      return "max_seconds: must be a number above 0 and at most " +
             seconds_text(limits.max_clip_seconds) + " (this server's limit)";
    p.max_clip_seconds = *s;
  }
  if (const auto* v = get("seconds")) {
    const auto s = parse_real(*v);
    if (!s || *s < kMinTextSeconds || *s > limits.max_clip_seconds)
      return "seconds: the length of text-only audio must be a number from 0.64 to " +
             seconds_text(limits.max_clip_seconds) + " (this server's limit)";
    p.seconds = *s;
  }
  out.model = limits.default_model;
  if (const auto* v = get("model"); v && !v->empty()) {
    std::string known;
    for (const auto& n : limits.models) known += (known.empty() ? "" : ", ") + n;
    if (!is_valid_model_name(*v))
      return "model: not a model name" +
             (known.empty() ? std::string() : " (this server has: " + known + ")");
    if (!limits.models.empty() &&
        std::find(limits.models.begin(), limits.models.end(), *v) == limits.models.end())
      return "model: unknown model \"" + *v + "\" (this server has: " + known + ")";
    out.model = *v;
  }
  if (const auto* v = get("format")) {
    if (*v == "wav") out.format = OutputFormat::kWav;
    else if (*v == "flac" && limits.flac_available) out.format = OutputFormat::kFlac;
    else return limits.flac_available ? "format: must be wav or flac"
                                      : "format: must be wav (this build has no FLAC)";
  }
  if (const auto* v = get("sample_format")) {
    if (*v == "f32") out.sample_format = SampleFormat::kF32;
    else if (*v == "s16") out.sample_format = SampleFormat::kS16;
    else return "sample_format: must be f32 or s16";
    if (out.sample_format == SampleFormat::kS16 && out.format != OutputFormat::kWav)
      return "sample_format: s16 applies to format wav only (FLAC is 24-bit)";
  }
  return "";
}

// With the fields applied: a request is either a video (uploaded or named) or text-only
// (`seconds`, no video). Returns an error message naming the field, or "".
std::string check_input_kind(const Fields& f, bool has_video) {
  const bool seconds = f.values.count("seconds") > 0;
  if (has_video && seconds)
    return "seconds: sets the length of text-only audio and cannot come with a video (to use "
           "only the start of a video, send max_seconds)";
  if (!has_video && !seconds)
    return "video: required (upload it as the multipart file field 'video'), or send seconds "
           "for text-only audio";
  if (!has_video && f.values.count("max_seconds"))
    return "max_seconds: limits the video used; a text-only request sets its length with "
           "seconds";
  return "";
}

// The upload's extension if it is a plain short one (FFmpeg probes the content anyway).
std::string safe_extension(const std::string& filename) {
  const auto dot = filename.rfind('.');
  if (dot == std::string::npos) return "bin";
  std::string ext = filename.substr(dot + 1);
  if (ext.empty() || ext.size() > 5) return "bin";
  for (char& c : ext) {
    if (!std::isalnum(static_cast<unsigned char>(c))) return "bin";
    c = char(std::tolower(static_cast<unsigned char>(c)));
  }
  return ext;
}

// The video part being received: a file under a random name, readable by this user only,
// removed again unless the request is accepted.
class UploadFile {
 public:
  UploadFile() = default;
  UploadFile(const UploadFile&) = delete;
  UploadFile& operator=(const UploadFile&) = delete;
  ~UploadFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  void create(const std::string& dir, const std::string& ext) {
    path_ = dir + "/" + new_random_id() + "." + ext;
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      const int err = errno;
      path_.clear();
      throw_storage(err);
    }
  }
  bool is_open() const { return fd_ >= 0; }
  void write(const char* data, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd_, data, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw_storage(w < 0 ? errno : ENOSPC);
      data += w;
      n -= size_t(w);
      bytes_ += size_t(w);
    }
  }
  void finish() {
    const int r = ::close(fd_);
    fd_ = -1;
    if (r != 0) throw_storage(errno);
  }
  size_t bytes() const { return bytes_; }
  // The caller owns the file from now on.
  std::string release() {
    std::string p = std::move(path_);
    path_.clear();
    return p;
  }

 private:
  [[noreturn]] static void throw_storage(int err) {
    if (auto e = storage_error(err, "the upload")) throw *e;
    throw foley::Error(foley::ErrorKind::kInternal,
                       std::string("cannot store an upload: ") + std::strerror(err));
  }

  std::string path_;
  int fd_ = -1;
  size_t bytes_ = 0;
};

// Fails early on files that are not a readable video, so the client gets 422 at submission; and
// on a clip longer than the server's limit that did not say how much of it to use
// (max_seconds), rather than silently using only its start.
ParsedRequest probe_or_fail(ParsedRequest r, const RequestLimits& limits, bool max_seconds_sent) {
  foley::VideoInfo info;
  try {
    info = foley::probe_video(r.request.video_path);
  } catch (const foley::Error& e) {
    if (r.request.owns_video) ::unlink(r.request.video_path.c_str());
    const MappedError m = map_error(e);
    return fail(m.status == 404 ? 422 : m.status, m.code, "video: " + m.message);
  }
  if (!max_seconds_sent && info.duration_sec > limits.max_clip_seconds + kDurationSlack) {
    if (r.request.owns_video) ::unlink(r.request.video_path.c_str());
    char length[32];
    std::snprintf(length, sizeof length, "%.2f", info.duration_sec);
    const std::string limit = seconds_text(limits.max_clip_seconds);
    return fail(422, "invalid_input",
                std::string("video: the clip is ") + length + " s long, above this server's "
                "limit of " + limit + " s (--max-clip-seconds); send max_seconds (at most " +
                limit + ") to use its first seconds");
  }
  r.request.video_seconds = info.duration_sec;
  r.ok = true;
  return r;
}

ParsedRequest parse_json(const std::string& text, const RequestLimits& limits) {
  const nlohmann::json body = nlohmann::json::parse(text, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return fail(400, "invalid_input", "body: not a JSON object");
  Fields f;
  for (const auto& [key, value] : body.items()) {
    if (value.is_string()) f.values[key] = value.get<std::string>();
    else if (value.is_number()) f.values[key] = value.dump();
    else if (!value.is_null()) return fail(400, "invalid_input", key + ": must be a string or a number");
  }
  ParsedRequest r;
  if (const std::string e = apply_fields(f, limits, r.request); !e.empty())
    return fail(400, "invalid_input", e);
  const auto it = f.values.find("video_path");
  const bool has_video = it != f.values.end() && !it->second.empty();
  if (!has_video && !f.values.count("seconds"))
    return fail(400, "invalid_input", "video_path: required (or upload the file as multipart "
                                      "field 'video'), or send seconds for text-only audio");
  if (const std::string e = check_input_kind(f, has_video); !e.empty())
    return fail(400, "invalid_input", e);
  if (!has_video) {
    r.ok = true;  // text-only: no file at all
    return r;
  }
  if (limits.media_root.empty())
    return fail(403, "invalid_input", "video_path: reading server files is disabled (no --media-root)");
  const std::string joined =
      it->second[0] == '/' ? it->second : limits.media_root + "/" + it->second;
  // Missing and outside-the-root get the same answer, so the API reveals nothing about files
  // elsewhere on the server.
  char resolved[PATH_MAX];
  const bool exists = ::realpath(joined.c_str(), resolved) != nullptr;
  if (!exists || std::string(resolved).rfind(limits.media_root + "/", 0) != 0)
    return fail(404, "not_found", "video_path: no such file under the media root");
  const std::string path = resolved;
  r.request.video_path = path;
  r.request.owns_video = false;
  return probe_or_fail(std::move(r), limits, f.values.count("max_seconds") > 0);
}


// Why a body could not be read to its end.
ParsedRequest unreadable_body(const RequestLimits& limits) {
  FrontServer::close_after_response();
  if (int64_t(FrontServer::body_bytes_read()) >= limits.max_upload_bytes)
    return fail(413, "too_large",
                "request body above --max-upload-mb (" +
                    std::to_string(limits.max_upload_bytes >> 20) + " MB)");
  return fail(400, "invalid_input", "body: incomplete, too slow, or not a well-formed form");
}

ParsedRequest parse_json_body(const httplib::ContentReader& body, const RequestLimits& limits) {
  std::string text;
  bool too_big = false;
  const bool complete = body([&](const char* data, size_t n) {
    if (text.size() + n > kMaxJsonBytes) {
      too_big = true;
      return false;
    }
    text.append(data, n);
    return true;
  });
  if (too_big) {
    FrontServer::close_after_response();
    return fail(413, "too_large", "body: a JSON request is at most 1 MiB");
  }
  if (!complete) return unreadable_body(limits);
  return parse_json(text, limits);
}

ParsedRequest parse_multipart_body(const httplib::ContentReader& body,
                                   const RequestLimits& limits) {
  Fields f;
  UploadFile upload;
  std::string video_name, current, field_error;
  bool in_video = false, saw_video = false;
  const bool complete = body(
      [&](const httplib::MultipartFormData& part) {
        current = part.name;
        in_video = part.name == "video";
        if (in_video) {
          if (saw_video) field_error = "video: sent more than once";
          else if (part.filename.empty()) field_error = "video: must be a file part (with a filename)";
          if (!field_error.empty()) return false;
          saw_video = true;
          video_name = part.filename;
          upload.create(limits.uploads_dir, safe_extension(part.filename));
          return true;
        }
        if (f.values.count(part.name)) field_error = part.name + ": sent more than once";
        else if (f.values.size() >= kMaxFields) field_error = "body: too many form fields";
        if (!field_error.empty()) return false;
        f.values[part.name];
        return true;
      },
      [&](const char* data, size_t n) {
        if (in_video) {
          upload.write(data, n);
          return true;
        }
        std::string& value = f.values[current];
        if (value.size() + n > kMaxFieldBytes) {
          field_error = (is_valid_utf8(current) ? current : std::string("a field")) +
                        ": longer than " + std::to_string(kMaxFieldBytes) + " bytes";
          return false;
        }
        value.append(data, n);
        return true;
      });
  if (!field_error.empty()) {
    FrontServer::close_after_response();
    return fail(400, "invalid_input", field_error);
  }
  if (!complete) return unreadable_body(limits);
  ParsedRequest r;
  if (const std::string e = apply_fields(f, limits, r.request); !e.empty())
    return fail(400, "invalid_input", e);
  if (const std::string e = check_input_kind(f, saw_video); !e.empty())
    return fail(400, "invalid_input", e);
  if (!saw_video) {
    r.ok = true;  // text-only
    return r;
  }
  if (upload.bytes() == 0) return fail(400, "invalid_input", "video: the uploaded file is empty");
  upload.finish();
  r.request.video_path = upload.release();
  r.request.owns_video = true;
  return probe_or_fail(std::move(r), limits, f.values.count("max_seconds") > 0);
}

}  // namespace

bool is_valid_utf8(const std::string& s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return false;
    if (i + size_t(len) > n) return false;
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += size_t(len);
  }
  return true;
}

ParsedRequest parse_generation_request(const httplib::Request& req,
                                       const httplib::ContentReader& body,
                                       const RequestLimits& limits) {
  const std::string type = req.get_header_value("Content-Type");
  try {
    if (type.rfind("application/json", 0) == 0) return parse_json_body(body, limits);
    if (req.is_multipart_form_data()) return parse_multipart_body(body, limits);
  } catch (const HttpError& e) {
    FrontServer::close_after_response();
    return fail(e);
  }
  FrontServer::close_after_response();
  return fail(400, "invalid_input",
              "body: send a multipart form (fields video or seconds, prompt, ...) or a JSON "
              "object");
}

}  // namespace foley_server
