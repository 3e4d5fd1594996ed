#include "requests.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "foley/media.h"
#include "http_errors.h"

namespace foley_server {

namespace {

constexpr size_t kMaxPromptBytes = 4096;

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

std::optional<long long> parse_int(const std::string& s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  return std::stoll(s);
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
  p.prompt = *prompt;
  if (const auto* v = get("negative_prompt")) {
    if (v->size() > kMaxPromptBytes) return "negative_prompt: longer than 4096 bytes";
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
             std::to_string(int(limits.max_clip_seconds));
    p.max_clip_seconds = *s;
  }
  if (const auto* v = get("format")) {
    if (*v == "wav") out.format = OutputFormat::kWav;
    else if (*v == "flac" && limits.flac_available) out.format = OutputFormat::kFlac;
    else return limits.flac_available ? "format: must be wav or flac"
                                      : "format: must be wav (this build has no FLAC)";
  }
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

// Writes the upload under a random name, readable by this user only.
std::string store_upload(const std::string& dir, const std::string& bytes,
                         const std::string& ext) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char name[40];
  std::snprintf(name, sizeof name, "%016llx.", (unsigned long long)rng());
  const std::string path = dir + "/" + name + ext;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw foley::Error(foley::ErrorKind::kInternal, "cannot create " + path);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      ::close(fd);
      ::unlink(path.c_str());
      throw foley::Error(foley::ErrorKind::kInternal, "cannot write " + path);
    }
    done += size_t(n);
  }
  ::close(fd);
  return path;
}

// Fails early on files that are not a readable video, so the client gets 422 at submission.
ParsedRequest probe_or_fail(ParsedRequest r) {
  try {
    foley::probe_video(r.request.video_path);
  } catch (const foley::Error& e) {
    if (r.request.owns_video) ::unlink(r.request.video_path.c_str());
    const MappedError m = map_error(e);
    return fail(m.status == 404 ? 422 : m.status, m.code, "video: " + m.message);
  }
  r.ok = true;
  return r;
}

ParsedRequest parse_json(const httplib::Request& req, const RequestLimits& limits) {
  const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
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
  if (it == f.values.end() || it->second.empty())
    return fail(400, "invalid_input", "video_path: required (or upload the file as multipart "
                                      "field 'video')");
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
  return probe_or_fail(std::move(r));
}

}  // namespace

ParsedRequest parse_generation_request(const httplib::Request& req, const RequestLimits& limits) {
  const std::string type = req.get_header_value("Content-Type");
  if (type.rfind("application/json", 0) == 0) return parse_json(req, limits);
  if (!req.is_multipart_form_data())
    return fail(400, "invalid_input",
                "body: send a multipart form (fields video, prompt, ...) or a JSON object");
  Fields f;
  for (const auto& [name, part] : req.files) {
    if (name == "video") continue;
    f.values[name] = part.content;
  }
  ParsedRequest r;
  if (!req.has_file("video") || req.get_file_value("video").filename.empty())
    return fail(400, "invalid_input", "video: required file field is missing");
  if (const std::string e = apply_fields(f, limits, r.request); !e.empty())
    return fail(400, "invalid_input", e);
  const auto& video = req.get_file_value("video");
  if (video.content.empty()) return fail(400, "invalid_input", "video: the uploaded file is empty");
  r.request.video_path = store_upload(limits.uploads_dir, video.content, safe_extension(video.filename));
  r.request.owns_video = true;
  return probe_or_fail(std::move(r));
}

}  // namespace foley_server
