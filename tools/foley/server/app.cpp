#include "app.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "foley/media.h"
#include "http_errors.h"
#include "web_page.h"  // generated at build time from tools/foley/web/index.html

namespace foley_server {

namespace {

constexpr const char* kIdPattern = "([^/]+)";

bool needs_auth(const std::string& path) {
  return path.rfind("/v1/", 0) == 0 || path == "/generate" || path == "/metrics";
}

// Compares without an early exit, so response times do not reveal the token's prefix.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return diff == 0 && !b.empty();
}

std::string read_whole_file(const std::string& path, bool& ok) {
  std::ifstream f(path, std::ios::binary);
  ok = bool(f);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
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
         const std::string& results_dir, const std::string& media_root_real)
    : options_(options),
      scheduler_(
          SchedulerOptions{options.queue_size, results_dir, options.result_ttl_seconds,
                           options.disk_budget_mb << 20},
          metrics_) {
  limits_.uploads_dir = uploads_dir;
  limits_.media_root = media_root_real;
  limits_.max_clip_seconds = options.max_clip_seconds;
  limits_.flac_available = foley::media_has_ffmpeg();
  const int threads = std::max(4, options.http_threads);
  http_.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  http_.set_payload_max_length(size_t(options.max_upload_mb) << 20);
  http_.set_read_timeout(options.io_timeout_seconds, 0);
  http_.set_write_timeout(options.io_timeout_seconds, 0);
  http_.set_keep_alive_timeout(5);
  // Accepted sockets inherit TCP_NODELAY from the listener; without it a response written in
  // two pieces waits for the client's delayed ACK (~40 ms per small request).
  http_.set_socket_options([](int sock) {
    httplib::default_socket_options(sock);
    int one = 1;
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  });
  routes();
}

App::~App() { stop(); }

int App::bind() {
  const int port = http_.bind_to_any_port(options_.host);
  if (port >= 0) widen_listen_backlog(port);
  return port;
}

void App::listen() { http_.listen_after_bind(); }

void App::stop() {
  stopping_ = true;
  http_.stop();
}

void App::start_workers(std::vector<std::unique_ptr<foley::Generator>> generators) {
  scheduler_.start(std::move(generators));
}

void App::drain() {
  phase_ = Phase::kDraining;
  metrics_.ready = false;
  scheduler_.drain(options_.drain_seconds);
}

bool App::authorized(const httplib::Request& req) const {
  if (options_.token.empty() || !needs_auth(req.path)) return true;
  const std::string h = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (h.rfind(prefix, 0) != 0) return false;
  return same_secret(h.substr(prefix.size()), options_.token);
}

void App::routes() {
  http_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req)) {
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, 401, "unauthorized", "missing or wrong bearer token");
      return httplib::Server::HandlerResponse::Handled;
    }
    const bool new_work = req.method == "POST";
    if (new_work && phase_ != Phase::kReady) {
      const bool loading = phase_ == Phase::kLoading;
      res.set_header("Retry-After", loading ? "5" : "30");
      send_error(res, 503, "unavailable",
                 loading ? "the model is still loading" : "the server is shutting down");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Bodies for errors httplib answers itself (unknown route, 413 payload too large, bad request).
  http_.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    switch (res.status) {
      case 404: send_error(res, 404, "not_found", "no such resource"); break;
      case 413: send_error(res, 413, "too_large", "request body above --max-upload-mb"); break;
      case 405: send_error(res, 405, "invalid_input", "method not allowed"); break;
      default:
        send_error(res, res.status, res.status >= 500 ? "internal" : "invalid_input",
                   "request refused (HTTP " + std::to_string(res.status) + ")");
    }
  });
  http_.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
          std::rethrow_exception(ep);
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
      case Phase::kReady: send_json(res, 200, {{"status", "ready"}}); break;
      case Phase::kDraining: send_json(res, 503, {{"status", "draining"}}); break;
    }
  });
  http_.Get("/openapi.json", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(openapi_json(), "application/json");
  });
  http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(scheduler_.queue_depth(), scheduler_.jobs_by_state()),
                    "text/plain; version=0.0.4");
  });
  http_.Post("/v1/generations", [this](const httplib::Request& req, httplib::Response& res) {
    post_generation(req, res, false);
  });
  http_.Post("/generate", [this](const httplib::Request& req, httplib::Response& res) {
    post_generation(req, res, true);
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
}

void App::post_generation(const httplib::Request& req, httplib::Response& res, bool synchronous) {
  ParsedRequest parsed = parse_generation_request(req, limits_);
  if (!parsed.ok) return send_error(res, parsed.status, parsed.code, parsed.message);
  parsed.request.synchronous = synchronous;
  parsed.request.mux = !synchronous && foley::media_has_ffmpeg();
  auto job = scheduler_.make_job(std::move(parsed.request));
  nlohmann::json accepted;  // taken before a worker can pick the job up: the 202 says queued
  {
    std::lock_guard<std::mutex> lock(job->mutex);
    accepted = job_json_locked(*job, "");
  }
  const SubmitResult submitted = scheduler_.submit(job);
  if (submitted != SubmitResult::kAccepted) {
    if (job->request.owns_video) std::remove(job->request.video_path.c_str());
    if (submitted == SubmitResult::kDraining) {
      res.set_header("Retry-After", "30");
      return send_error(res, 503, "unavailable", "the server is shutting down");
    }
    res.set_header("Retry-After", std::to_string(scheduler_.retry_after_seconds()));
    return send_error(res, 429, "queue_full", "the job queue is full; retry later");
  }
  if (!synchronous) {
    res.set_header("Location", accepted["status_url"].get<std::string>());
    return send_json(res, 202, accepted);
  }
  std::unique_lock<std::mutex> lock(job->mutex);
  job->changed.wait(lock, [&] { return is_terminal(job->state); });
  if (job->state != JobState::kSucceeded) {
    const int status = job->error_status ? job->error_status : 500;
    send_error(res, status, job->error_code, job->error_message);
  } else {
    bool ok = false;
    std::string audio = read_whole_file(job->audio_path, ok);
    if (!ok) {
      send_error(res, 500, "internal", "internal error (see the server log)");
    } else {
      const bool flac = job->request.format == OutputFormat::kFlac;
      res.set_header("Content-Disposition",
                     "attachment; filename=\"foley-" + job->id + (flac ? ".flac\"" : ".wav\""));
      res.set_header("X-Foley-Job", job->id);
      res.set_content(std::move(audio), flac ? "audio/flac" : "audio/wav");
    }
  }
  const std::string id = job->id;
  lock.unlock();
  scheduler_.remove(id);
}

std::shared_ptr<Job> App::job_or_404(const httplib::Request& req, httplib::Response& res) {
  auto job = scheduler_.find(req.matches[1]);
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
  if (scheduler_.cancel(job)) {
    // A running job stops at its next denoising step and will end "cancelled" whatever happens.
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
  scheduler_.remove(job->id);
  send_json(res, 200, {{"id", job->id}, {"state", state}, {"deleted", true}});
}

void App::get_file(const httplib::Request& req, httplib::Response& res, bool video) {
  auto job = job_or_404(req, res);
  if (!job) return;
  std::lock_guard<std::mutex> lock(job->mutex);
  if (job->state != JobState::kSucceeded) {
    const std::string why = is_terminal(job->state)
                                ? std::string("the job ") + state_name(job->state) + "; no result"
                                : "the job has not finished yet";
    return send_error(res, 409, "invalid_input", why);
  }
  const std::string& path = video ? job->video_path : job->audio_path;
  if (path.empty())
    return send_error(res, 404, "not_found",
                      video ? "no muxed video for this job (the clip could not be muxed to MP4)"
                            : "the result has expired");
  bool ok = false;
  std::string bytes = read_whole_file(path, ok);
  if (!ok) return send_error(res, 404, "not_found", "the result has expired");
  const bool flac = job->request.format == OutputFormat::kFlac;
  const std::string ext = video ? "mp4" : flac ? "flac" : "wav";
  res.set_header("Content-Disposition",
                 "attachment; filename=\"foley-" + job->id + "." + ext + "\"");
  res.set_content(std::move(bytes), video ? "video/mp4" : flac ? "audio/flac" : "audio/wav");
}

}  // namespace foley_server
