#include "app.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>

#include <charconv>
#include <optional>
#include <string_view>
#include <thread>

#include "downloads.h"
#include "foley/media.h"
#include "http_errors.h"
#include "web_page.h"  // generated at build time from tools/foley/web/index.html

namespace foley_server {

namespace {

constexpr const char* kIdPattern = "([^/]+)";

// POST /v1/models/{name}/load or /unload: no body is read.
bool is_model_action(std::string_view path) {
  auto ends_with = [&](std::string_view tail) {
    return path.size() > tail.size() && path.substr(path.size() - tail.size()) == tail;
  };
  return path.rfind("/v1/models/", 0) == 0 && (ends_with("/load") || ends_with("/unload"));
}

// Health checks never wait behind uploads, downloads or event streams.
Lane classify(std::string_view method, std::string_view path) {
  if (path.rfind("/health/", 0) == 0) return Lane::kHealth;
  // Unloading a model is quick (its memory is freed); loading one takes a while and waits on
  // the work lane like an upload.
  if (method == "POST" && is_model_action(path) &&
      path.substr(path.size() - 7) == "/unload")
    return Lane::kControl;
  if (method == "POST") return Lane::kWork;
  if (method == "GET" && path.rfind("/v1/generations/", 0) == 0) {
    auto ends_with = [&](std::string_view tail) {
      return path.size() > tail.size() && path.substr(path.size() - tail.size()) == tail;
    };
    if (ends_with("/events")) return Lane::kStream;
    if (ends_with("/audio") || ends_with("/video")) return Lane::kWork;
  }
  return Lane::kControl;
}

FrontLimits front_limits(const ServerOptions& o) {
  FrontLimits l;
  l.threads[int(Lane::kWork)] = std::max(2, o.http_threads);
  l.backlog[int(Lane::kWork)] = 4 * std::max(2, o.http_threads);
  l.threads[int(Lane::kStream)] = std::max(1, o.max_streams);
  l.backlog[int(Lane::kStream)] = 0;  // the cap: one stream more gets 503 at once
  l.io_timeout_seconds = o.io_timeout_seconds;
  l.head_timeout_seconds = std::min(10.0, double(o.io_timeout_seconds));
  l.max_body_bytes = size_t(o.max_upload_mb) << 20;
  return l;
}

// Content-Length as a number; nullopt when absent, -1 when not a plain decimal.
std::optional<int64_t> content_length(const httplib::Request& req) {
  if (!req.has_header("Content-Length")) return std::nullopt;
  const std::string v = req.get_header_value("Content-Length");
  int64_t n = -1;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size() || n < 0) return -1;
  return n;
}

bool is_chunked(const httplib::Request& req) {
  std::string te = req.get_header_value("Transfer-Encoding");
  for (char& c : te) c = char(std::tolower(static_cast<unsigned char>(c)));
  return te.find("chunked") != std::string::npos;
}

bool has_body(const httplib::Request& req) {
  const auto length = content_length(req);
  return is_chunked(req) || (length && *length != 0);
}

// An answer sent before the body was read: the connection cannot carry another request.
void answer_unread(const httplib::Request& req, httplib::Response& res) {
  if (!has_body(req)) return;
  res.set_header("Connection", "close");
  FrontServer::close_after_response();
}

bool needs_auth(const std::string& path) {
  return path.rfind("/v1/", 0) == 0 || path == "/generate" || path == "/metrics";
}

// RFC 7235: the scheme is case-insensitive, and one or more spaces separate it from the token.
std::optional<std::string> bearer_token(const std::string& header) {
  constexpr std::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return std::nullopt;
  size_t at = kScheme.size();
  if (header[at] != ' ') return std::nullopt;
  while (at < header.size() && header[at] == ' ') ++at;
  std::string token = header.substr(at);
  while (!token.empty() && token.back() == ' ') token.pop_back();
  return token;
}

// Compares without an early exit, so response times do not reveal the token's prefix.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return diff == 0 && !b.empty();
}

// Debian's libcpp-httplib is compiled with a listen backlog of 5: a burst of clients overflows
// it, and on loopback some of them get reset. Linux lets listen() be called again on the
// listening socket to change the backlog; the socket is the one accepting on our port.
void widen_listen_backlog(int port) {
  for (int fd = 0; fd < 1024; ++fd) {
    int accepting = 0;
    socklen_t len = sizeof accepting;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    int bound = -1;
    if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    if (bound == port) ::listen(fd, 1024);
  }
}

}  // namespace

App::App(const ServerOptions& options, const std::string& uploads_dir,
         const std::string& media_root_real, const JobServiceFactory& make_jobs,
         foley::ModelRegistry* registry)
    : options_(options),
      jobs_(make_jobs(metrics_)),
      registry_(registry),
      http_(front_limits(options), classify) {
  limits_.uploads_dir = uploads_dir;
  if (registry_) {
    for (const auto& m : registry_->status()) limits_.models.push_back(m.name);
    limits_.default_model = registry_->default_model();
  }
  limits_.media_root = media_root_real;
  limits_.max_clip_seconds = options.max_clip_seconds;
  openapi_ = openapi_json(options.max_clip_seconds);
  limits_.flac_available = foley::media_has_ffmpeg();
  limits_.max_upload_bytes = int64_t(options.max_upload_mb) << 20;
  // Accepted sockets inherit TCP_NODELAY from the listener; without it a response written in
  // two pieces waits for the client's delayed ACK (~40 ms per small request).
  http_.set_socket_options([](int sock) {
    httplib::default_socket_options(sock);
    int one = 1;
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  });
  routes();
}

App::~App() { stop(0); }

int App::bind() {
  int port = options_.port;
  if (port == 0) {
    port = http_.bind_to_any_port(options_.host);
  } else if (!http_.bind_to_port(options_.host, port)) {
    port = -1;
  }
  if (port > 0) widen_listen_backlog(port);
  return port;
}

void App::listen() {
  listen_entered_ = true;
  if (!stopping_) http_.listen_after_bind();
  listen_returned_ = true;
}

void App::stop(double grace_seconds) {
  stopping_ = true;
  // httplib's stop() does nothing before its accept loop runs, and a loop started after it would
  // never end: a stop that comes right after listen() was called (a start that fails at once)
  // waits for the loop to run (or for listen() to have seen stopping_). Either this sees
  // listen_entered_ or listen() sees stopping_ (both sequentially consistent).
  if (listen_entered_) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!http_.is_running() && !listen_returned_ && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  *loads_cancel_ = true;
  http_.shut_down(std::chrono::duration<double>(grace_seconds));
}

bool App::drain() {
  phase_ = Phase::kDraining;
  metrics_.ready = false;
  return jobs_->drain(options_.drain_seconds, 1.0);
}

bool App::judge_head(const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req)) {
    res.set_header("WWW-Authenticate", "Bearer");
    answer_unread(req, res);
    send_error(res, 401, "unauthorized", "missing or wrong bearer token");
    return true;
  }
  if (req.method != "POST") return false;
  if (phase_ != Phase::kReady) {
    const bool loading = phase_ == Phase::kLoading;
    res.set_header("Retry-After", loading ? "5" : "30");
    answer_unread(req, res);
    send_error(res, 503, "unavailable",
               loading ? "the server is still loading its models" : "the server is shutting down");
    return true;
  }
  // Model actions read no body: a length is not required (a body sent anyway is not read).
  if (is_model_action(req.path)) {
    answer_unread(req, res);
    return false;
  }
  // The body is judged by its head, before a byte of it is read.
  const auto length = content_length(req);
  if (!is_chunked(req) && !length) {
    res.set_header("Connection", "close");
    FrontServer::close_after_response();
    send_error(res, 411, "invalid_input",
               "body: a POST needs a Content-Length or a chunked Transfer-Encoding");
    return true;
  }
  if (length && *length < 0) {
    res.set_header("Connection", "close");
    FrontServer::close_after_response();
    send_error(res, 400, "invalid_input", "Content-Length: not a number");
    return true;
  }
  if (length && *length > limits_.max_upload_bytes) {
    answer_unread(req, res);
    send_error(res, 413, "too_large",
               "request body above --max-upload-mb (" + std::to_string(options_.max_upload_mb) +
                   " MB)");
    return true;
  }
  return false;
}

bool App::authorized(const httplib::Request& req) const {
  if (options_.token.empty() || !needs_auth(req.path)) return true;
  const auto token = bearer_token(req.get_header_value("Authorization"));
  return token && same_secret(*token, options_.token);
}

void App::routes() {
  http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    return judge_head(req, res) ? httplib::Server::HandlerResponse::Handled
                                : httplib::Server::HandlerResponse::Unhandled;
  });
  // curl asks before sending a body over 1 KiB: a request refused by its head gets the refusal
  // instead of "100 Continue", so the body is never sent.
  http_.set_expect_100_continue_handler([this](const httplib::Request& req, httplib::Response& res) {
    return judge_head(req, res) ? res.status : 100;
  });
  // Bodies for errors httplib answers itself (unknown route, bad request, ...).
  http_.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    switch (res.status) {
      case 404: send_error(res, 404, "not_found", "no such resource"); break;
      case 413: send_error(res, 413, "too_large", "request body above --max-upload-mb"); break;
      case 405: send_error(res, 405, "invalid_input", "method not allowed"); break;
      default:
        send_error(res, res.status, res.status >= 500 ? "internal" : "invalid_input",
                   "request refused (HTTP " + std::to_string(res.status) + ")");
    }
    if (res.status >= 400) answer_unread(req, res);
  });
  http_.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        answer_unread(req, res);  // a handler that threw may have left the body half read
        try {
          std::rethrow_exception(ep);
        } catch (const HttpError& e) {
          if (e.retry_after > 0) res.set_header("Retry-After", std::to_string(e.retry_after));
          send_error(res, e.status, e.code, e.what());
        } catch (const foley::Error& e) {
          const MappedError m = map_error(e);
          send_error(res, m.status, m.code, m.message);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "foley serve: internal error: %s\n", e.what());
          send_error(res, 500, "internal", "internal error (see the server log)");
        } catch (...) {
          send_error(res, 500, "internal", "internal error (see the server log)");
        }
      });

  http_.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(reinterpret_cast<const char*>(kWebPage), kWebPageSize,
                    "text/html; charset=utf-8");
  });
  http_.Get("/health/live", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "live"}});
  });
  http_.Get("/health/ready", [this](const httplib::Request&, httplib::Response& res) {
    switch (phase_.load()) {
      case Phase::kLoading: send_json(res, 503, {{"status", "loading"}}); break;
      case Phase::kReady:
        // A front end is ready while its queue (Redis) answers.
        if (jobs_->healthy()) send_json(res, 200, {{"status", "ready"}});
        else send_json(res, 503, {{"status", "queue_unreachable"}});
        break;
      case Phase::kDraining: send_json(res, 503, {{"status", "draining"}}); break;
    }
  });
  http_.Get("/openapi.json", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(openapi_, "application/json");
  });
  http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    const FrontServer::Stats s = http_.stats();
    if (registry_ && options_.device == "cuda") metrics_.device_memory_bytes = registry_->used_bytes();
    std::string text = metrics_.render(jobs_->queue_depth(), jobs_->jobs_by_state());
    if (registry_)
      text += render_model_metrics(registry_->status(), registry_->options().budget_bytes,
                                   registry_->used_bytes());
    text += "# HELP foley_http_connections Open client connections.\n"
            "# TYPE foley_http_connections gauge\nfoley_http_connections " +
            std::to_string(s.connections) +
            "\n# HELP foley_http_refused_total Connections answered 503 (busy), 408 (head too "
            "slow) or 431 (head too large), or 429/503 when their lane was full, before reaching a handler.\n"
            "# TYPE foley_http_refused_total counter\n"
            "foley_http_refused_total{reason=\"busy\"} " + std::to_string(s.rejected_busy) +
            "\nfoley_http_refused_total{reason=\"head_timeout\"} " +
            std::to_string(s.head_timeouts) +
            "\nfoley_http_refused_total{reason=\"head_too_large\"} " +
            std::to_string(s.head_too_large) + "\n";
    text += jobs_->extra_metrics();
    res.set_content(text, "text/plain; version=0.0.4");
  });
  http_.Post("/v1/generations", [this](const httplib::Request& req, httplib::Response& res,
                                       const httplib::ContentReader& body) {
    post_generation(req, res, body, false);
  });
  http_.Post("/generate", [this](const httplib::Request& req, httplib::Response& res,
                                 const httplib::ContentReader& body) {
    post_generation(req, res, body, true);
  });
  const std::string job = std::string("/v1/generations/") + kIdPattern;
  http_.Get(job, [this](const httplib::Request& req, httplib::Response& res) { get_job(req, res); });
  http_.Delete(job, [this](const httplib::Request& req, httplib::Response& res) {
    delete_job(req, res);
  });
  http_.Get(job + "/events", [this](const httplib::Request& req, httplib::Response& res) {
    get_events(req, res);
  });
  http_.Get(job + "/audio", [this](const httplib::Request& req, httplib::Response& res) {
    get_file(req, res, false);
  });
  http_.Get(job + "/video", [this](const httplib::Request& req, httplib::Response& res) {
    get_file(req, res, true);
  });
  http_.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    get_models(req, res);
  });
  const std::string model = std::string("/v1/models/") + kIdPattern;
  // Registered with a content reader so that httplib does not read a body: none is needed (one
  // sent anyway closes the connection after the answer, see judge_head).
  http_.Post(model + "/load", [this](const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader&) { post_model_load(req, res); });
  http_.Post(model + "/unload", [this](const httplib::Request& req, httplib::Response& res,
                                       const httplib::ContentReader&) {
    post_model_unload(req, res);
  });
}

void App::post_generation(const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& body, bool synchronous) {
  ParsedRequest parsed = parse_generation_request(req, body, limits_);
  if (!parsed.ok) {
    if (parsed.retry_after > 0) res.set_header("Retry-After", std::to_string(parsed.retry_after));
    return send_error(res, parsed.status, parsed.code, parsed.message);
  }
  parsed.request.synchronous = synchronous;
  parsed.request.mux =
      !synchronous && !parsed.request.text_only() && foley::media_has_ffmpeg();
  auto job = jobs_->make_job(std::move(parsed.request));
  nlohmann::json accepted;  // taken before a worker can pick the job up: the 202 says queued
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    accepted = job_json_locked(*job, "");
  }
  SubmitResult submitted;
  try {
    submitted = jobs_->submit(job);
  } catch (const JournalError& e) {
    // Not recorded, so not accepted: a 202 is a promise the job survives a crash.
    if (job->request.owns_video) std::remove(job->request.video_path.c_str());
    std::fprintf(stderr, "foley serve: cannot journal a job: %s\n", e.what());
    const auto err = e.kind() == JournalErrorKind::kFull ? storage_error(ENOSPC, "the job")
                     : e.kind() == JournalErrorKind::kReadOnly ||
                             e.kind() == JournalErrorKind::kIo
                         ? storage_error(EROFS, "the job")
                         : std::nullopt;
    if (!err) return send_error(res, 500, "internal", "internal error (see the server log)");
    res.set_header("Retry-After", std::to_string(err->retry_after));
    return send_error(res, err->status, err->code, err->what());
  }
  if (submitted != SubmitResult::kAccepted) {
    if (job->request.owns_video) std::remove(job->request.video_path.c_str());
    if (submitted == SubmitResult::kDraining) {
      res.set_header("Retry-After", "30");
      return send_error(res, 503, "unavailable", "the server is shutting down");
    }
    res.set_header("Retry-After", std::to_string(jobs_->retry_after_seconds()));
    return send_error(res, 429, "queue_full", "the job queue is full; retry later");
  }
  if (synchronous) return answer_synchronously(req, job, res);
  res.set_header("Location", accepted["status_url"].get<std::string>());
  send_json(res, 202, accepted);
}

// POST /generate: waits for the job, bounded by --sync-timeout, and cancels it when the client
// goes away (nobody would read the answer) or the wait runs out.
void App::answer_synchronously(const httplib::Request& req, const std::shared_ptr<Job>& job,
                               httplib::Response& res) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(options_.sync_timeout_seconds));
  bool timed_out = false;
  {
    std::unique_lock<std::mutex> lock(job->mutex);
    while (!is_terminal(job->state)) {
      job->changed.wait_for(lock, std::chrono::milliseconds(200));
      if (is_terminal(job->state)) break;
      const bool gone = FrontServer::client_gone();
      timed_out = std::chrono::steady_clock::now() >= deadline;
      if (gone || timed_out || stopping_) {
        lock.unlock();
        jobs_->cancel(job, gone ? "the client disconnected" : timed_out
                                          ? "took longer than --sync-timeout"
                                          : "server shutting down");
        lock.lock();
        // The cancel takes effect at the job's next step; the answer does not wait for it.
        break;
      }
    }
  }
  std::unique_lock<std::mutex> lock(job->mutex);
  if (timed_out && !is_terminal(job->state)) {
    lock.unlock();
    send_error(res, 504, "timeout",
               "the generation took longer than the server's --sync-timeout (" +
                   std::to_string(int(options_.sync_timeout_seconds)) +
                   " s); submit long jobs as asynchronous generations instead");
    return;
  }
  if (job->state != JobState::kSucceeded) {
    const int status = job->error_status ? job->error_status : is_terminal(job->state) ? 500 : 503;
    const std::string code = job->error_code.empty() ? "unavailable" : job->error_code;
    const std::string message =
        job->error_message.empty() ? "the generation was stopped" : job->error_message;
    lock.unlock();
    send_error(res, status, code, message);
    jobs_->remove(job->id);
    return;
  }
  const ResultFile file = open_result_locked(*job, false);
  const std::string id = job->id;
  lock.unlock();
  if (!file) {
    send_error(res, 410, "not_found", "the result is gone");
  } else {
    res.set_header("X-Foley-Job", id);
    serve_file(req, res, file, "foley-" + id);
  }
  // The open descriptor keeps the bytes readable after the files are deleted.
  jobs_->remove(id);
}

std::shared_ptr<Job> App::job_or_404(const httplib::Request& req, httplib::Response& res) {
  auto job = jobs_->find(req.matches[1]);
  if (!job) send_error(res, 404, "not_found", "no such generation (unknown or expired id)");
  return job;
}

void App::get_job(const httplib::Request& req, httplib::Response& res) {
  auto job = job_or_404(req, res);
  if (!job) return;
  std::lock_guard<std::mutex> lock(job->mutex);
  send_json(res, 200, job_json_locked(*job, ""));
}

void App::delete_job(const httplib::Request& req, httplib::Response& res) {
  auto job = job_or_404(req, res);
  if (!job) return;
  if (jobs_->cancel(job, "cancelled by request")) {
    // A queued job is cancelled now; a running one stops at its next check, and whatever it
    // was doing, it ends "cancelled" (the scheduler decides its end under the same lock).
    std::lock_guard<std::mutex> lock(job->mutex);
    nlohmann::json body = job_json_locked(*job, "");
    body["state"] = "cancelled";
    return send_json(res, 202, body);
  }
  // Finished: DELETE forgets the job and deletes its files.
  std::string state;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    state = state_name(job->state);
  }
  jobs_->remove(job->id);
  send_json(res, 200, {{"id", job->id}, {"state", state}, {"deleted", true}});
}

void App::get_file(const httplib::Request& req, httplib::Response& res, bool video) {
  auto job = job_or_404(req, res);
  if (!job) return;
  ResultFile file;
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    if (job->state != JobState::kSucceeded) {
      const std::string why = is_terminal(job->state)
                                  ? std::string("the job ") + state_name(job->state) + "; no result"
                                  : "the job has not finished yet";
      return send_error(res, 409, "invalid_input", why);
    }
    if (video && job->video_path.empty())
      return send_error(res, 404, "not_found",
                        job->request.text_only()
                            ? "no video for this job: a text-only generation makes audio only"
                            : "no muxed video for this job (the clip could not be muxed to MP4)");
    file = open_result_locked(*job, video);
  }
  if (!file) return send_error(res, 404, "not_found", "the result has expired");
  serve_file(req, res, file, "foley-" + job->id);
}

}  // namespace foley_server
