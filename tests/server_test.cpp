// End-to-end tests of `foley serve`: the real binary on port 0 with a tiny model bundle, talked to
// over real HTTP (httplib::Client). Covers readiness, submit/poll/download, SSE, cancel, the
// bounded queue, bad uploads and parameters, auth, 20 concurrent clients and the SIGTERM drain;
// and several models (issue 14) with a second tiny bundle of another size: /v1/models, loading
// on demand, swaps within a memory budget without mix-ups, load/unload.
#ifdef FOLEY_HAVE_HTTP

#include <gtest/gtest.h>
#include <httplib.h>
#include <fcntl.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "job.h"
#include "media_clips.h"
#include "redis_client.h"
#include "redis_server.h"
#include "test_util.h"

namespace foley::test {
namespace {

using nlohmann::json;
using media::read_file;
using foley_server::parse_redis_url;
using foley_server::RedisClient;
using foley_server::RedisReply;

// `foley serve --port 0 ...` as a child process; its stdout is collected to learn the port and
// when it is ready. Killed (SIGKILL) when the object goes away.
class ServerProcess {
 public:
  ServerProcess(const std::string& bundle, std::vector<std::string> extra)
      : ServerProcess(serve_args(bundle, std::move(extra)), 0) {}
  // Any `foley` command line (after the binary), e.g. a worker or a front end without a model.
  ServerProcess(std::vector<std::string> args, int) {
    args.insert(args.begin(), FOLEY_CLI);
    stderr_path_ = temp_dir() + "/serve.stderr";
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      // On a shared, oversubscribed machine OpenMP's spinning waits make the first (warm-up)
      // run ~20x slower; sleeping waits keep the suite within its time budget.
      setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
      dup2(out[1], 1);
      const int err = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (err >= 0) dup2(err, 2);
      close(out[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    reader_ = std::thread([this, fd = out[0]] {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof buf)) > 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        output_.append(buf, size_t(n));
        changed_.notify_all();
      }
      close(fd);
      std::lock_guard<std::mutex> lock(mutex_);
      eof_ = true;
      changed_.notify_all();
    });
  }
  ~ServerProcess() {
    if (pid_ > 0 && exit_code_ == kRunning) {
      // A drained exit removes the server's temporary data directory; SIGKILL only if stuck.
      kill(pid_, SIGTERM);
      if (wait_exit(10) == -1 && exit_code_ == kRunning) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    if (reader_.joinable()) reader_.join();
  }

  static std::vector<std::string> serve_args(const std::string& bundle,
                                             std::vector<std::string> extra) {
    // Clips of at most 1 s (arenas and warm-up small), unless the test asks otherwise.
    std::vector<std::string> args = {"serve", "--model", bundle};
    if (std::find(extra.begin(), extra.end(), "--max-clip-seconds") == extra.end())
      args.insert(args.end(), {"--max-clip-seconds", "1"});
    if (std::find(extra.begin(), extra.end(), "--port") == extra.end())
      args.insert(args.end(), {"--port", "0"});
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  int port() {
    const std::string marker = "listening on http://127.0.0.1:";
    wait_for(marker, 60);
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t at = output_.find(marker);
    return at == std::string::npos ? 0 : std::atoi(output_.c_str() + at + marker.size());
  }
  void wait_ready() { ASSERT_TRUE(wait_for("foley serve: ready on", 180)) << diagnostics(); }
  void wait_output(const std::string& text) {
    ASSERT_TRUE(wait_for(text, 180)) << diagnostics();
  }
  void signal(int sig) { kill(pid_, sig); }
  pid_t pid() const { return pid_; }
  // The exit status, or -1 on a timeout or a signal death.
  int wait_exit(double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (reader_.joinable()) reader_.join();
        return exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  std::string output() {
    std::lock_guard<std::mutex> lock(mutex_);
    return output_;
  }
  std::string diagnostics() {
    return "stdout:\n" + output() + "\nstderr:\n" + media::read_file(stderr_path_);
  }

 private:
  static constexpr int kRunning = -1000;
  bool wait_for(const std::string& text, double timeout_s) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] {
      return output_.find(text) != std::string::npos || eof_;
    }) && output_.find(text) != std::string::npos;
  }

  pid_t pid_ = -1;
  int exit_code_ = kRunning;
  std::string stderr_path_;
  std::thread reader_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string output_;
  bool eof_ = false;
};

// The tiny bundle and clips are made once for the whole suite.
struct Assets {
  std::string dir, bundle, clip, long_clip, not_video, truncated, big;
};
const Assets* g_assets = nullptr;

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (g_assets || !media::have_ffmpeg_cli()) return;
    auto a = std::make_unique<Assets>();
    a->dir = cached_assets_dir();
    if (a->dir.empty()) return;
    a->bundle = a->dir + "/tiny.safetensors";
    a->clip = a->dir + "/clip.mp4";
    a->long_clip = a->dir + "/long.mp4";
    a->not_video = a->dir + "/notes.mp4";
    a->truncated = a->dir + "/truncated.mp4";
    a->big = std::string(2 << 20, '\x7f');
    g_assets = a.release();
  }

  // Every test runs in its own process under ctest; the tiny model (python3-torch, slow on a
  // busy machine) is made once per build of the CLI and kept in the build tree. Made in a
  // private directory and renamed into place, so parallel test processes never see half of it.
  static std::string cached_assets_dir() {
    namespace fs = std::filesystem;
    const fs::path cli(FOLEY_CLI);
    const auto stamp = [](const fs::path& p) {
      return uint64_t(fs::last_write_time(p).time_since_epoch().count());
    };
    const uint64_t key = stamp(cli) ^ (stamp(source_path("scripts/make_tiny_models.py")) * 31);
    const fs::path dir = cli.parent_path().parent_path() / "tests" /
                         ("server_assets_" + std::to_string(key));
    if (fs::exists(dir / "done")) return dir.string();
    // Importing torch takes seconds on a busy machine: checked only when the cache is missing.
    if (!have_python_torch()) return "";
    // Beside the final directory: rename() does not cross filesystems.
    const std::string work = dir.string() + ".partial-" + std::to_string(getpid());
    std::error_code ec;
    fs::remove_all(work, ec);
    fs::create_directories(work, ec);
    std::string out;
    const std::string models = work + "/models";
    if (run_command(std::string(FOLEY_PYTHON) + " " + source_path("scripts/make_tiny_models.py") +
                        " " + models + " --seed 3 2>&1", &out) != 0 ||
        run_command(std::string(FOLEY_CLI) + " convert --model-dir " + models +
                        " --dtype f32 -o " + work + "/tiny.safetensors 2>&1", &out) != 0) {
      ADD_FAILURE() << out;
      return "";
    }
    fs::remove_all(models);
    // 1 s at 25 fps: T25 = 25, Ta = 50, 48000 samples; the 4 s clip makes slower jobs.
    if (run_command("ffmpeg -nostdin -y -v error -f lavfi -i testsrc=s=128x96:r=25:d=1 "
                    "-pix_fmt yuv420p " + work + "/clip.mp4 && ffmpeg -nostdin -y -v error "
                    "-f lavfi -i testsrc=s=128x96:r=25:d=4 -pix_fmt yuv420p " + work +
                    "/long.mp4 2>&1", &out) != 0) {
      ADD_FAILURE() << out;
      return "";
    }
    media::write_file(work + "/notes.mp4", "this is a text file, not a video\n");
    // Without the moov box at the end the container cannot be opened.
    const std::string whole = read_file(work + "/long.mp4");
    media::write_file(work + "/truncated.mp4", whole.substr(0, whole.size() / 2));
    media::write_file(work + "/done", "");
    fs::rename(work, dir, ec);  // fails harmlessly when another process got there first
    if (ec) fs::remove_all(work, ec);
    // Assets of earlier builds of the CLI are stale now.
    for (const auto& e : fs::directory_iterator(dir.parent_path(), ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("server_assets_", 0) == 0 && e.path() != dir &&
          name.find(".partial-") == std::string::npos)
        fs::remove_all(e.path(), ec);
    }
    return fs::exists(dir / "done") ? dir.string() : "";
  }

  void SetUp() override {
    if (!media::have_ffmpeg_cli()) FOLEY_SKIP_MISSING("ffmpeg CLI not installed");
    if (!g_assets && !have_python_torch())
      FOLEY_SKIP_MISSING("python3-torch needed for the tiny model");
    ASSERT_NE(g_assets, nullptr) << "tiny model or clips could not be made";
  }

  static const Assets& assets() { return *g_assets; }

  // The shared server of most tests: default limits but room for 20 concurrent jobs.
  static ServerProcess& shared_server() {
    static std::unique_ptr<ServerProcess> server = [] {
      auto s = std::make_unique<ServerProcess>(assets().bundle,
                                               std::vector<std::string>{"--queue-size", "32"});
      s->wait_ready();
      return s;
    }();
    return *server;
  }
};

httplib::MultipartFormDataItems fields(const std::string& video_path, const std::string& steps,
                                       std::vector<std::pair<std::string, std::string>> extra = {}) {
  httplib::MultipartFormDataItems items;
  if (!video_path.empty())
    items.push_back({"video", read_file(video_path), "clip.mp4", "video/mp4"});
  items.push_back({"prompt", "footsteps on gravel", "", ""});
  items.push_back({"steps", steps, "", ""});
  for (auto& [k, v] : extra) items.push_back({k, v, "", ""});
  return items;
}

// The 4 s clip, on a server limited to 1 s (--max-clip-seconds 1, the tests' default): without
// max_seconds it would be refused for its length.
httplib::MultipartFormDataItems long_fields(const std::string& steps) {
  return fields(g_assets->long_clip, steps, {{"max_seconds", "1"}});
}

// Asserts the body is a JSON error that leaks neither paths nor C++ internals.
json expect_clean_error(const httplib::Result& r, int status, const std::string& mentions = "") {
  EXPECT_TRUE(r) << "no response";
  if (!r) return {};
  EXPECT_EQ(r->status, status) << r->body;
  const json body = json::parse(r->body, nullptr, false);
  EXPECT_TRUE(body.contains("error")) << r->body;
  EXPECT_EQ(r->body.find("std::"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find('/'), std::string::npos) << r->body;
  if (!mentions.empty()) {
    EXPECT_NE(r->body.find(mentions), std::string::npos) << r->body;
  }
  return body;
}

std::string submit(httplib::Client& c, const httplib::MultipartFormDataItems& items) {
  auto r = c.Post("/v1/generations", items);
  EXPECT_TRUE(r);
  if (!r) return "";
  EXPECT_EQ(r->status, 202) << r->body;
  const json j = json::parse(r->body, nullptr, false);
  EXPECT_EQ(j.value("state", ""), "queued") << r->body;
  // 128 random bits as 32 lower-case hex digits.
  const std::string id = j.value("id", "");
  EXPECT_EQ(id.size(), 32u) << id;
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  return id;
}

json poll_until(httplib::Client& c, const std::string& id,
                const std::function<bool(const json&)>& done, double timeout_s = 60) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = c.Get("/v1/generations/" + id);
    if (r && r->status == 200) {
      const json j = json::parse(r->body);
      if (done(j)) return j;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "job " << id << " did not reach the expected state";
  return {};
}

bool is_finished(const json& j) {
  const std::string s = j.value("state", "");
  return s == "succeeded" || s == "failed" || s == "cancelled";
}

// Float32 mono WAV at 48 kHz: the sample count.
int64_t wav_samples(const std::string& wav) {
  if (wav.size() < 44 || wav.compare(0, 4, "RIFF") != 0 || wav.compare(8, 4, "WAVE") != 0) return -1;
  size_t pos = 12;
  bool fmt_ok = false;
  while (pos + 8 <= wav.size()) {
    uint32_t size;
    std::memcpy(&size, wav.data() + pos + 4, 4);
    const std::string id = wav.substr(pos, 4);
    if (id == "fmt ") {
      uint16_t tag, channels;
      uint32_t rate;
      std::memcpy(&tag, wav.data() + pos + 8, 2);
      std::memcpy(&channels, wav.data() + pos + 10, 2);
      std::memcpy(&rate, wav.data() + pos + 12, 4);
      fmt_ok = (tag == 3 || tag == 0xFFFE) && channels == 1 && rate == 48000;
    } else if (id == "data") {
      return fmt_ok && pos + 8 + size <= wav.size() ? int64_t(size / 4) : -1;
    }
    pos += 8 + size + (size & 1);
  }
  return -1;
}

// The samples of a float32 WAV (empty if it is not one).
std::vector<float> wav_floats(const std::string& wav) {
  const int64_t n = wav_samples(wav);
  if (n <= 0) return {};
  size_t pos = 12;
  while (pos + 8 <= wav.size() && wav.compare(pos, 4, "data") != 0) {
    uint32_t size;
    std::memcpy(&size, wav.data() + pos + 4, 4);
    pos += 8 + size + (size & 1);
  }
  std::vector<float> out(static_cast<size_t>(n));
  std::memcpy(out.data(), wav.data() + pos + 8, out.size() * 4);
  return out;
}

// A raw loopback connection, for requests httplib's client never sends: slow, half-sent, without
// a length, chunked past the cap, or abandoned.
class RawConn {
 public:
  explicit RawConn(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~RawConn() { close_now(); }
  bool ok() const { return fd_ >= 0; }
  bool send_all(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += size_t(n);
    }
    return true;
  }
  // Reads until the peer closes, a whole response (head + Content-Length) is in, or the timeout.
  std::string read_response(double timeout_s) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      char buf[65536];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, size_t(n));
      const size_t head = out.find("\r\n\r\n");
      const size_t cl = out.find("Content-Length: ");
      if (head != std::string::npos && cl != std::string::npos && cl < head &&
          out.size() >= head + 4 + size_t(std::atol(out.c_str() + cl + 16)))
        break;
    }
    return out;
  }
  // True if the server closed the connection (EOF) within the timeout.
  bool closed_by_peer(double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
    return false;
  }
  void close_now() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::atoi(response.c_str() + 9);
}

// A multipart body as a browser sends it.
std::string multipart_body(const std::string& boundary, const std::string& video,
                           const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string b;
  for (const auto& [k, v] : fields)
    b += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + k + "\"\r\n\r\n" + v +
         "\r\n";
  b += "--" + boundary +
       "\r\nContent-Disposition: form-data; name=\"video\"; filename=\"clip.mp4\"\r\n"
       "Content-Type: video/mp4\r\n\r\n" + video + "\r\n--" + boundary + "--\r\n";
  return b;
}

std::string post_head(const std::string& path, const std::string& boundary, size_t length) {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
         "boundary=" + boundary + "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
}

// A metric's value in the /metrics text (the first line starting with `series`), or -1.
double metric(httplib::Client& c, const std::string& series) {
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return -1;
  const size_t at = r->body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::atof(r->body.c_str() + at + 1 + series.size() + 1);
}

bool wait_metric(httplib::Client& c, const std::string& series, double at_least, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (metric(c, series) >= at_least) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Milliseconds for one GET on a fresh connection, or 1e9 without an answer.
double probe_ms(int port, const std::string& path, int expect_status) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(5, 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = c.Get(path);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r && r->status == expect_status ? ms : 1e9;
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

TEST_F(ServerTest, ReadinessGoesFrom503To200AndLiveAnswersAtOnce) {
  ServerProcess server(assets().bundle, {});
  httplib::Client c("127.0.0.1", server.port());
  auto live = c.Get("/health/live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  EXPECT_EQ(json::parse(live->body)["status"], "live");
  auto first = c.Get("/health/ready");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 503) << "ready before the model was loaded and warmed";
  EXPECT_EQ(json::parse(first->body)["status"], "loading");
  // New work is refused while loading.
  expect_clean_error(c.Post("/v1/generations", fields(assets().clip, "2")), 503);
  server.wait_ready();
  auto ready = c.Get("/health/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(json::parse(ready->body)["status"], "ready");
  EXPECT_NE(server.output().find("foley serve: ready on http://127.0.0.1:"), std::string::npos);
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Type").find("text/html"), std::string::npos);
  EXPECT_NE(page->body.find("<html"), std::string::npos);
  auto api = c.Get("/openapi.json");
  ASSERT_TRUE(api);
  const json spec = json::parse(api->body);
  EXPECT_EQ(spec["openapi"].get<std::string>().substr(0, 2), "3.");
  for (const char* p : {"/v1/generations", "/v1/generations/{id}", "/v1/generations/{id}/events",
                        "/v1/generations/{id}/audio", "/v1/generations/{id}/video", "/generate",
                        "/metrics", "/health/ready", "/v1/models", "/v1/models/{name}/load",
                        "/v1/models/{name}/unload"})
    EXPECT_TRUE(spec["paths"].contains(p)) << p;
}

TEST_F(ServerTest, SubmitPollAndDownloadAudioAndVideo) {
  httplib::Client c("127.0.0.1", shared_server().port());
  const std::string id = submit(c, fields(assets().clip, "3", {{"seed", "7"}}));
  ASSERT_FALSE(id.empty());
  const json j = poll_until(c, id, is_finished);
  ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
  EXPECT_DOUBLE_EQ(j["progress"]["fraction"].get<double>(), 1.0);
  EXPECT_TRUE(j["timings"].contains("denoise")) << j.dump();
  EXPECT_EQ(j["params"]["steps"], 3);
  EXPECT_EQ(j["params"]["seed"], 7);
  EXPECT_EQ(j["params"]["model"], "tiny") << "a plain --model BUNDLE is named after its stem";
  auto audio = c.Get("/v1/generations/" + id + "/audio");
  ASSERT_TRUE(audio);
  ASSERT_EQ(audio->status, 200);
  EXPECT_EQ(audio->get_header_value("Content-Type"), "audio/wav");
  EXPECT_NE(audio->get_header_value("Content-Disposition").find("attachment; filename="),
            std::string::npos);
  // The 1 s clip yields 24 frames at 25 fps (0.96 s): Ta = 48 latents x 960 samples.
  const double seconds = j["audio_seconds"].get<double>();
  EXPECT_NEAR(seconds, 0.96, 0.041);
  EXPECT_EQ(wav_samples(audio->body), int64_t(std::lround(seconds * 48000))) << seconds;
  auto video = c.Get("/v1/generations/" + id + "/video");
  ASSERT_TRUE(video);
  ASSERT_EQ(video->status, 200) << video->body;
  EXPECT_EQ(video->get_header_value("Content-Type"), "video/mp4");
  EXPECT_EQ(video->body.substr(4, 4), "ftyp");
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  for (const char* m : {"foley_queue_depth ", "foley_jobs{state=\"succeeded\"}",
                        "foley_stage_seconds_bucket{stage=\"denoise\"", "foley_ready 1",
                        "foley_model_load_seconds{model=\"tiny\"} ",
                        "foley_model_loaded{model=\"tiny\"} 1", "foley_device_memory_bytes "})
    EXPECT_NE(metrics->body.find(m), std::string::npos) << m;
  expect_clean_error(c.Get("/v1/generations/0123456789abcdef0123456789abcdef"), 404);
}

TEST_F(ServerTest, EventStreamReportsProgressThenDone) {
  httplib::Client c("127.0.0.1", shared_server().port());
  const std::string id = submit(c, fields(assets().clip, "4"));
  ASSERT_FALSE(id.empty());
  std::string stream;
  auto r = c.Get("/v1/generations/" + id + "/events",
                 [&](const char* data, size_t n) { stream.append(data, n); return true; });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  const size_t progress = stream.find("event: progress\ndata: ");
  const size_t done = stream.find("event: done\ndata: ");
  EXPECT_NE(progress, std::string::npos) << stream;
  ASSERT_NE(done, std::string::npos) << stream;
  EXPECT_LT(progress, done);
  EXPECT_NE(stream.find("\"total_steps\":4"), std::string::npos) << stream;
  EXPECT_NE(stream.find("\"total_windows\":1"), std::string::npos) << stream;
  const std::string done_data = stream.substr(done + 18, stream.find('\n', done + 18) - done - 18);
  EXPECT_EQ(json::parse(done_data)["state"], "succeeded");
  // A late client gets the terminal event at once and the stream ends.
  std::string late;
  c.Get("/v1/generations/" + id + "/events",
        [&](const char* data, size_t n) { late.append(data, n); return true; });
  EXPECT_EQ(late.rfind("event: done\n", 0), 0u) << late;
}

TEST_F(ServerTest, DeleteStopsARunningJob) {
  httplib::Client c("127.0.0.1", shared_server().port());
  const std::string id = submit(c, long_fields("200"));
  ASSERT_FALSE(id.empty());
  poll_until(c, id, [](const json& j) {
    return j.value("state", "") == "running" || is_finished(j);
  });
  auto del = c.Delete("/v1/generations/" + id);
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 202) << del->body;
  EXPECT_EQ(json::parse(del->body)["state"], "cancelled");
  const json j = poll_until(c, id, is_finished, 30);
  EXPECT_EQ(j.value("state", ""), "cancelled") << j.dump();
  EXPECT_LT(j["progress"]["step"].get<int>(), 200) << "ran to the end";
  expect_clean_error(c.Get("/v1/generations/" + id + "/audio"), 409);
}

TEST_F(ServerTest, FullQueueAnswers429WithRetryAfter) {
  ServerProcess server(assets().bundle, {"--queue-size", "1", "--jobs-per-device", "1"});
  server.wait_ready();
  httplib::Client c("127.0.0.1", server.port());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto r = c.Post("/v1/generations", long_fields("200"));
    ASSERT_TRUE(r);
    if (r->status == 202) {
      ids.push_back(json::parse(r->body)["id"]);
      continue;
    }
    // One running and one queued at most: the third submission cannot fit.
    expect_clean_error(r, 429);
    EXPECT_GE(std::stoi(r->get_header_value("Retry-After", 0)), 1);
    break;
  }
  EXPECT_LE(ids.size(), 2u);
  for (const auto& id : ids) c.Delete("/v1/generations/" + id);
}

TEST_F(ServerTest, BadUploadsAndParametersAre4xx) {
  httplib::Client c("127.0.0.1", shared_server().port());
  auto post = [&](const httplib::MultipartFormDataItems& items) {
    return c.Post("/v1/generations", items);
  };
  auto status_4xx = [](const httplib::Result& r) { return r && r->status >= 400 && r->status < 500; };
  auto r = post(fields(assets().not_video, "2"));
  EXPECT_TRUE(status_4xx(r)) << (r ? r->body : "");
  expect_clean_error(r, r ? r->status : 0, "video");
  r = post(fields(assets().truncated, "2"));
  EXPECT_TRUE(status_4xx(r)) << (r ? r->body : "");
  expect_clean_error(r, r ? r->status : 0);
  expect_clean_error(post(fields("", "2")), 400, "video");
  expect_clean_error(post(fields(assets().clip, "abc")), 400, "steps");
  expect_clean_error(post(fields(assets().clip, "100000")), 400, "steps");
  expect_clean_error(post(fields(assets().clip, "2", {{"guidance", "nan"}})), 400, "guidance");
  expect_clean_error(post(fields(assets().clip, "2", {{"seed", "-1"}})), 400, "seed");
  expect_clean_error(post(fields(assets().clip, "2", {{"format", "mp3"}})), 400, "format");
  httplib::MultipartFormDataItems no_prompt = {{"video", read_file(assets().clip), "a.mp4", ""}};
  expect_clean_error(post(no_prompt), 400, "prompt");
  // JSON naming a server file is refused without --media-root.
  expect_clean_error(c.Post("/v1/generations", R"({"video_path":"/etc/passwd","prompt":""})",
                            "application/json"),
                     403);
  // The synchronous endpoint validates the same way and also answers in JSON.
  expect_clean_error(c.Post("/generate", fields(assets().not_video, "2")), 422);
}

// Issue 15: audio from the prompt alone (`seconds`, no video), and --max-clip-seconds as the
// operator's limit on clip length (here 2 s).
TEST_F(ServerTest, TextOnlyJobsAndTheClipLimit) {
  ServerProcess server(assets().bundle, {"--max-clip-seconds", "2"});
  server.wait_ready();
  httplib::Client c("127.0.0.1", server.port());
  // seconds=2 without a video: T25 = 50 frames at 25 fps, Ta = 100 latents x 960 samples.
  const std::string id = submit(c, fields("", "2", {{"seconds", "2"}, {"seed", "3"}}));
  ASSERT_FALSE(id.empty());
  const json j = poll_until(c, id, is_finished);
  ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
  EXPECT_TRUE(j.value("text_only", false)) << j.dump();
  EXPECT_FALSE(j.contains("video_url")) << j.dump();
  EXPECT_EQ(j["params"]["seconds"].get<double>(), 2.0) << j.dump();
  EXPECT_FALSE(j["params"].contains("max_seconds")) << j.dump();
  EXPECT_DOUBLE_EQ(j["audio_seconds"].get<double>(), 2.0);
  EXPECT_EQ(j.value("windows", 0), 1);
  EXPECT_FALSE(j["timings"].contains("decode")) << "no video was decoded: " << j.dump();
  auto audio = c.Get("/v1/generations/" + id + "/audio");
  ASSERT_TRUE(audio);
  ASSERT_EQ(audio->status, 200);
  EXPECT_EQ(wav_samples(audio->body), 96000);
  expect_clean_error(c.Get("/v1/generations/" + id + "/video"), 404, "text-only");
  // The same through JSON (no --media-root needed: no file is named) and POST /generate.
  auto r = c.Post("/v1/generations", R"({"prompt":"rain","seconds":1,"steps":1})",
                  "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  r = c.Post("/generate", fields("", "1", {{"seconds", "0.64"}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(wav_samples(r->body), 16 * 2 * 960);  // T25 = 16: Ta = 32

  // The 4 s clip is longer than the limit: refused (422, naming the limit) unless max_seconds
  // says how much of it to use; nothing is queued.
  const double before = metric(c, "foley_jobs_total{state=\"submitted\"}");
  const json refused = expect_clean_error(
      c.Post("/v1/generations", fields(assets().long_clip, "2")), 422, "limit of 2 s");
  EXPECT_NE(refused.dump().find("max_seconds"), std::string::npos) << refused.dump();
  EXPECT_EQ(metric(c, "foley_jobs_total{state=\"submitted\"}"), before);
  const std::string cut = submit(c, fields(assets().long_clip, "2", {{"max_seconds", "2"}}));
  ASSERT_FALSE(cut.empty());
  const json k = poll_until(c, cut, is_finished);
  ASSERT_EQ(k.value("state", ""), "succeeded") << k.dump();
  EXPECT_FALSE(k.value("text_only", true));
  EXPECT_EQ(k["params"]["max_seconds"].get<double>(), 2.0);
  EXPECT_NEAR(k["audio_seconds"].get<double>(), 2.0, 0.041);
  // max_seconds is bounded by the limit, and the OpenAPI document states it.
  expect_clean_error(
      c.Post("/v1/generations", fields(assets().clip, "2", {{"max_seconds", "3"}})), 400,
      "max_seconds");
  auto api = c.Get("/openapi.json");
  ASSERT_TRUE(api);
  const json props =
      json::parse(api->body)["components"]["schemas"]["GenerationFields"]["properties"];
  EXPECT_EQ(props["max_seconds"]["maximum"], 2) << props.dump();
  EXPECT_EQ(props["seconds"]["maximum"], 2) << props.dump();
}

TEST_F(ServerTest, BadTextOnlyRequestsAre400AndCreateNoJob) {
  httplib::Client c("127.0.0.1", shared_server().port());  // --max-clip-seconds 1
  const double before = metric(c, "foley_jobs_total{state=\"submitted\"}");
  for (const std::string bad : {"0", "-1", "nan", "inf", "0.5", "1.5", "abc", "", "2s"}) {
    SCOPED_TRACE("seconds=" + bad);
    expect_clean_error(c.Post("/v1/generations", fields("", "1", {{"seconds", bad}})), 400,
                       "seconds");
  }
  // Neither a video nor seconds; seconds with a video; max_seconds without one.
  expect_clean_error(c.Post("/v1/generations", fields("", "1")), 400, "seconds");
  expect_clean_error(c.Post("/v1/generations", R"({"prompt":"x"})", "application/json"), 400,
                     "seconds");
  expect_clean_error(c.Post("/v1/generations", fields(assets().clip, "1", {{"seconds", "1"}})),
                     400, "seconds");
  expect_clean_error(
      c.Post("/v1/generations", fields("", "1", {{"seconds", "1"}, {"max_seconds", "1"}})), 400,
      "max_seconds");
  expect_clean_error(
      c.Post("/v1/generations", R"({"prompt":"x","seconds":0})", "application/json"), 400,
      "seconds");
  EXPECT_EQ(metric(c, "foley_jobs_total{state=\"submitted\"}"), before);
}

// What the journal and the Redis queue store of a request keeps a text-only job text-only, and
// records written before `seconds` existed still load.
TEST(ServerJobs, TextOnlyRequestsSurviveTheirRecord) {
  foley_server::JobRequest r;
  r.params.prompt = "rain";
  r.params.seconds = 2.5;
  r.params.steps = 3;
  const foley_server::JobRequest back =
      foley_server::request_from_json(json::parse(foley_server::request_to_json(r).dump()));
  EXPECT_TRUE(back.text_only());
  EXPECT_EQ(back.params.seconds, 2.5);
  EXPECT_EQ(back.params.steps, 3);
  json old = foley_server::request_to_json(r);
  old.erase("seconds");
  old["video_path"] = "clip.mp4";
  const foley_server::JobRequest legacy = foley_server::request_from_json(old);
  EXPECT_FALSE(legacy.text_only());
  EXPECT_EQ(legacy.params.seconds, 0);
}

// A job's model travels with its record (journal, Redis); records written before models had
// names load with none (the server's default model).
TEST(ServerJobs, TheModelNameSurvivesTheRecord) {
  foley_server::JobRequest r;
  r.params.prompt = "rain";
  r.params.seconds = 1;
  r.model = "xl";
  const json record = foley_server::request_to_json(r);
  EXPECT_EQ(foley_server::request_from_json(json::parse(record.dump())).model, "xl");
  json old = record;
  old.erase("model");
  EXPECT_EQ(foley_server::request_from_json(old).model, "");
}

TEST(ServerJobs, ProgressCountsWindowsWithinADenoisingStep) {
  foley::GenerationProgress p;
  p.stage = "denoise";
  p.step = 2;
  p.total_steps = 4;
  const double start = foley_server::overall_fraction(p);  // one window: 2 of 4 steps
  p.window = 2;
  p.total_windows = 8;
  const double later = foley_server::overall_fraction(p);  // 2.25 of 4 steps
  EXPECT_GT(later, start);
  p.step = 3;
  p.window = 0;
  const double next = foley_server::overall_fraction(p);
  EXPECT_NEAR((later - start) / (next - start), 0.25, 1e-9);
  foley_server::Job job;
  job.progress = p;
  const json pj = foley_server::progress_json_locked(job);
  EXPECT_EQ(pj["window"], 0);
  EXPECT_EQ(pj["total_windows"], 8);
}

TEST_F(ServerTest, TokenAndUploadCap) {
  ServerProcess server(assets().bundle, {"--token", "s3cret", "--max-upload-mb", "1"});
  server.wait_ready();
  httplib::Client c("127.0.0.1", server.port());
  expect_clean_error(c.Get("/v1/generations/x"), 401);
  expect_clean_error(c.Get("/metrics"), 401);
  expect_clean_error(c.Post("/generate", fields(assets().clip, "2")), 401);
  auto open = c.Get("/health/ready");
  ASSERT_TRUE(open);
  EXPECT_EQ(open->status, 200);
  c.set_bearer_token_auth("wrong");
  expect_clean_error(c.Get("/metrics"), 401);
  c.set_bearer_token_auth("s3cret");
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  // RFC 7235: the scheme is case-insensitive.
  for (const char* header : {"bearer s3cret", "BEARER s3cret", "Bearer   s3cret"}) {
    auto r = c.Get("/metrics", httplib::Headers{{"Authorization", header}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << header;
  }
  expect_clean_error(c.Get("/metrics", httplib::Headers{{"Authorization", "Bearers3cret"}}), 401);
  httplib::MultipartFormDataItems big = {{"video", assets().big, "big.mp4", "video/mp4"},
                                         {"prompt", "x", "", ""}};
  expect_clean_error(c.Post("/v1/generations", big), 413);
  // The synchronous path with a valid token returns the audio itself.
  auto sync = c.Post("/generate", fields(assets().clip, "2"));
  ASSERT_TRUE(sync);
  ASSERT_EQ(sync->status, 200) << sync->body;
  EXPECT_EQ(sync->get_header_value("Content-Type"), "audio/wav");
  EXPECT_EQ(wav_samples(sync->body), 46080);
}

TEST_F(ServerTest, TwentyConcurrentClientsAreAllServed) {
  const int port = shared_server().port();
  std::atomic<int> ok{0};
  std::vector<std::string> failures(20);
  std::vector<std::thread> clients;
  for (int i = 0; i < 20; ++i)
    clients.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(120, 0);
      auto r = c.Post("/generate", fields(assets().clip, "1", {{"seed", std::to_string(i)}}));
      if (r && r->status == 200 && wav_samples(r->body) == 46080) ++ok;
      else failures[i] = r ? std::to_string(r->status) + " " + r->body.substr(0, 200)
                           : "no response: " + httplib::to_string(r.error());
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 20);
  for (const auto& f : failures)
    if (!f.empty()) ADD_FAILURE() << f;
}

TEST_F(ServerTest, MaxBatchDenoisesJobsOfOneLengthTogetherWithTheirOwnResults) {
  // --max-batch 4: the worker that takes the first job gathers the queued jobs of the same clip
  // length for up to 1.5 s. Five video jobs (own seeds and guidance) and two text-only jobs of
  // one length: a batch of 4 videos, the fifth alone (nothing joins it within the window), the
  // two text-only jobs together. Every job's audio equals the unbatched server's for the same
  // request (f32 WAV).
  ServerProcess batched(assets().bundle,
                        {"--max-batch", "4", "--batch-window-ms", "1500", "--queue-size", "32"});
  batched.wait_ready();
  httplib::Client b("127.0.0.1", batched.port());
  httplib::Client a("127.0.0.1", shared_server().port());
  std::vector<httplib::MultipartFormDataItems> reqs;
  for (int i = 0; i < 5; ++i)
    reqs.push_back(fields(assets().clip, "2",
                          {{"seed", std::to_string(20 + i)}, {"guidance", i % 2 ? "2.5" : "4.5"}}));
  for (int i = 0; i < 2; ++i)
    reqs.push_back(fields("", "2", {{"seconds", "0.8"}, {"seed", std::to_string(30 + i)}}));
  std::vector<std::string> ids;
  for (const auto& r : reqs) ids.push_back(submit(b, r));
  std::vector<int> sizes;
  for (size_t i = 0; i < reqs.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_FALSE(ids[i].empty());
    const json j = poll_until(b, ids[i], is_finished, 120);
    ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
    sizes.push_back(j.value("batch_size", 0));
    auto got = b.Get("/v1/generations/" + ids[i] + "/audio");
    ASSERT_TRUE(got);
    ASSERT_EQ(got->status, 200);
    // The same request on the unbatched server.
    const std::string id = submit(a, reqs[i]);
    const json k = poll_until(a, id, is_finished, 120);
    ASSERT_EQ(k.value("state", ""), "succeeded") << k.dump();
    EXPECT_EQ(k.value("batch_size", 0), 1);
    auto want = a.Get("/v1/generations/" + id + "/audio");
    ASSERT_TRUE(want);
    // Within 1e-5 (tests/batch_test.cpp says why not bitwise: oneDNN's GEMM rounds a row
    // differently for another number of rows); the one that ran alone is bitwise equal.
    const std::vector<float> x = wav_floats(got->body), y = wav_floats(want->body);
    ASSERT_FALSE(x.empty());
    ASSERT_EQ(x.size(), y.size());
    float worst = 0;
    for (size_t s = 0; s < x.size(); ++s) worst = std::max(worst, std::fabs(x[s] - y[s]));
    EXPECT_LE(worst, 1e-5f);
    if (sizes.back() == 1) EXPECT_TRUE(got->body == want->body);
  }
  EXPECT_EQ(sizes, (std::vector<int>{4, 4, 4, 4, 1, 2, 2}));
  EXPECT_EQ(metric(b, "foley_job_batch_size_count"), 7);
  EXPECT_EQ(metric(b, "foley_job_batch_size_sum"), 21);
  EXPECT_EQ(metric(b, "foley_job_batch_size_bucket{le=\"1\"}"), 1);
  EXPECT_NE(batched.output().find("4 jobs of model tiny run as one batch"), std::string::npos)
      << batched.diagnostics();
}

TEST_F(ServerTest, QueuedVideosAreDecodedAheadWithTheSameResult) {
  // --decode-ahead 2 with one worker: while the first job runs (20 steps), the queued ones are
  // decoded (Model::prepare_video). Every job is the same request, so each one's audio must be
  // bitwise the first's, which decoded its video as it ran.
  ServerProcess server(assets().bundle, {"--decode-ahead", "2", "--queue-size", "8"});
  server.wait_ready();
  httplib::Client c("127.0.0.1", server.port());
  const auto req = fields(assets().clip, "20", {{"seed", "7"}});
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(submit(c, req));
  std::string first;
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_FALSE(ids[i].empty());
    const json j = poll_until(c, ids[i], is_finished, 120);
    ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
    EXPECT_NE(j.dump().find("\"decode\""), std::string::npos) << j.dump();
    auto got = c.Get("/v1/generations/" + ids[i] + "/audio");
    ASSERT_TRUE(got);
    ASSERT_EQ(got->status, 200);
    if (i == 0) first = got->body;
    else EXPECT_TRUE(got->body == first) << "a job decoded ahead sounds different";
  }
  EXPECT_GE(metric(c, "foley_jobs_decoded_ahead_total"), 1) << server.diagnostics();
}

TEST_F(ServerTest, OverlappedEncodersRunTwoJobsPerGeneratorWithTheSameResults) {
  // --overlap-encoders: one generator, two workers leasing it; while one job denoises the next
  // one's encoders run (tests/overlap_test.cpp shows that in the library). Every job is the
  // same request, so each one's audio must be bitwise what the shared server gives.
  ServerProcess server(assets().bundle, {"--overlap-encoders", "on", "--queue-size", "8"});
  server.wait_ready();
  EXPECT_NE(server.output().find("2 workers on 1 generators with overlapped encoders"),
            std::string::npos)
      << server.diagnostics();
  httplib::Client c("127.0.0.1", server.port());
  httplib::Client a("127.0.0.1", shared_server().port());
  const auto req = fields(assets().clip, "12", {{"seed", "11"}});
  const std::string want_id = submit(a, req);
  ASSERT_EQ(poll_until(a, want_id, is_finished, 120).value("state", ""), "succeeded");
  auto want = a.Get("/v1/generations/" + want_id + "/audio");
  ASSERT_TRUE(want);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(submit(c, req));
  std::vector<std::pair<std::string, std::string>> spans;
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_FALSE(ids[i].empty());
    const json j = poll_until(c, ids[i], is_finished, 120);
    ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
    spans.emplace_back(j.value("started_at", ""), j.value("finished_at", ""));
    auto got = c.Get("/v1/generations/" + ids[i] + "/audio");
    ASSERT_TRUE(got);
    ASSERT_EQ(got->status, 200);
    EXPECT_TRUE(got->body == want->body) << "a job run beside another sounds different";
  }
  // Two jobs ran at once on the one generator.
  bool together = false;
  for (size_t i = 0; i < spans.size(); ++i)
    for (size_t k = i + 1; k < spans.size(); ++k)
      together |= spans[i].first < spans[k].second && spans[k].first < spans[i].second;
  EXPECT_TRUE(together) << server.diagnostics();
}

TEST_F(ServerTest, ResultsExpireByTtlAndDiskBudget) {
  // Each 0.96 s result is a ~184 kB WAV plus a small MP4: eight of them exceed 1 MB.
  ServerProcess server(assets().bundle, {"--disk-budget-mb", "1"});
  server.wait_ready();
  httplib::Client c("127.0.0.1", server.port());
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    ids.push_back(submit(c, fields(assets().clip, "1")));
    ASSERT_FALSE(ids.back().empty());
    poll_until(c, ids.back(), is_finished);
  }
  // The janitor deletes the oldest results first until the rest fit.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int status = 200;
  while (status == 200 && std::chrono::steady_clock::now() < deadline) {
    auto r = c.Get("/v1/generations/" + ids.front());
    ASSERT_TRUE(r);
    status = r->status;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status, 404) << "oldest result kept beyond the disk budget";
  auto newest = c.Get("/v1/generations/" + ids.back() + "/audio");
  ASSERT_TRUE(newest);
  EXPECT_EQ(newest->status, 200);

  ServerProcess short_ttl(assets().bundle, {"--result-ttl", "1"});
  short_ttl.wait_ready();
  httplib::Client c2("127.0.0.1", short_ttl.port());
  const std::string id = submit(c2, fields(assets().clip, "1"));
  ASSERT_FALSE(id.empty());
  poll_until(c2, id, is_finished);
  const auto ttl_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  status = 200;
  while (status == 200 && std::chrono::steady_clock::now() < ttl_deadline) {
    auto r = c2.Get("/v1/generations/" + id);
    ASSERT_TRUE(r);
    status = r->status;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status, 404) << "result kept beyond --result-ttl";
  expect_clean_error(c2.Get("/v1/generations/" + id + "/audio"), 404);
}

TEST_F(ServerTest, JsonVideoPathOnlyInsideTheMediaRoot) {
  ServerProcess server(assets().bundle, {"--media-root", assets().dir});
  server.wait_ready();
  httplib::Client c("127.0.0.1", server.port());
  auto post = [&](const json& body) {
    return c.Post("/v1/generations", body.dump(), "application/json");
  };
  auto ok = post({{"video_path", "clip.mp4"}, {"prompt", "rain"}, {"steps", 1}});
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 202) << ok->body;
  const json j = poll_until(c, json::parse(ok->body)["id"], is_finished);
  EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump();
  // Outside the root and missing look the same: no oracle for files elsewhere.
  std::string up;
  for (int i = 0; i < 24; ++i) up += "../";
  const json outside = expect_clean_error(post({{"video_path", "/etc/passwd"}, {"prompt", ""}}), 404);
  expect_clean_error(post({{"video_path", up + "etc/passwd"}, {"prompt", ""}}), 404);
  const json missing = expect_clean_error(post({{"video_path", "missing.mp4"}, {"prompt", ""}}), 404);
  EXPECT_EQ(outside, missing);
  expect_clean_error(post({{"video_path", "clip.mp4"}, {"prompt", ""}, {"steps", "abc"}}), 400,
                     "steps");
  // The clip itself is not deleted after use (only uploads are).
  EXPECT_TRUE(std::filesystem::exists(assets().clip));
}


TEST_F(ServerTest, SigtermDrainsAndExitsZero) {
  ServerProcess server(assets().bundle, {"--drain-seconds", "20"});
  server.wait_ready();
  httplib::Client c("127.0.0.1", server.port());
  const std::string id = submit(c, fields(assets().clip, "20"));
  ASSERT_FALSE(id.empty());
  poll_until(c, id, [](const json& j) { return j.value("state", "") != "queued"; });
  server.signal(SIGTERM);
  // While the running job finishes (20 steps: seconds on the CPU), readiness says draining and
  // new work is refused.
  bool saw_draining = false;
  for (int i = 0; i < 200 && !saw_draining; ++i) {
    auto r = c.Get("/health/ready");
    if (!r) break;  // already gone
    saw_draining = r->status == 503 && json::parse(r->body)["status"] == "draining";
    if (saw_draining) expect_clean_error(c.Post("/v1/generations", fields(assets().clip, "2")), 503);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(saw_draining) << "readiness never said draining while the job finished";
  EXPECT_EQ(server.wait_exit(60), 0);
  EXPECT_NE(server.output().find("foley serve: draining"), std::string::npos) << server.output();
  EXPECT_NE(server.output().find("foley serve: stopped"), std::string::npos) << server.output();
}

TEST_F(ServerTest, FixedPortIsHonoured) {
  const int port = free_port();
  ServerProcess server(assets().bundle, {"--port", std::to_string(port)});
  EXPECT_EQ(server.port(), port) << server.diagnostics();
  EXPECT_LT(probe_ms(port, "/health/live", 200), 1e9) << "nothing answers on --port";
}

TEST_F(ServerTest, MalformedNumbersAndTextAre400NamingTheFieldAndCreateNoJob) {
  httplib::Client c("127.0.0.1", shared_server().port());
  const double before = metric(c, "foley_jobs_total{state=\"submitted\"}");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"steps", "9999999999999999999"}, {"steps", "99999999999999999999999"},
      {"steps", "1.5"},                 {"steps", "+3"},
      {"steps", " 3"},                  {"steps", "-0"},
      {"guidance", "1e999"},            {"guidance", "-inf"},
      {"seed", "18446744073709551616"}, {"seed", "1e3"},
      {"max_seconds", "nan"},           {"max_seconds", "1e-400x"},
      {"sample_format", "s8"},          {"format", "wav\xff"},
  };
  for (const auto& [field, value] : cases) {
    SCOPED_TRACE(field + "=" + value);
    expect_clean_error(c.Post("/v1/generations", fields(assets().clip, "2", {{field, value}})),
                       400, field);
  }
  // Invalid UTF-8 (a lone continuation byte, an overlong '/', a surrogate) in either prompt.
  for (const std::string bad : {"a\xff", "\xc0\xaf", "\xed\xa0\x80"}) {
    httplib::MultipartFormDataItems items = {{"video", read_file(assets().clip), "c.mp4", ""},
                                             {"prompt", bad, "", ""}};
    expect_clean_error(c.Post("/v1/generations", items), 400, "prompt");
    items = {{"video", read_file(assets().clip), "c.mp4", ""},
             {"prompt", "rain", "", ""},
             {"negative_prompt", bad, "", ""}};
    expect_clean_error(c.Post("/v1/generations", items), 400, "negative_prompt");
  }
  EXPECT_EQ(metric(c, "foley_jobs_total{state=\"submitted\"}"), before);
}

TEST_F(ServerTest, DeleteAnsweredCancelledAlwaysEndsCancelled) {
  // One-step jobs spend most of their time after the last denoising step (VAE, writing,
  // muxing): DELETEs landing there used to be answered "cancelled" while the job succeeded.
  ServerProcess server(assets().bundle, {"--jobs-per-device", "1"});
  server.wait_ready();
  httplib::Client c("127.0.0.1", server.port());
  int promised = 0;
  for (int i = 0; i < 12; ++i) {
    const std::string id = submit(c, fields(assets().clip, "1"));
    ASSERT_FALSE(id.empty());
    poll_until(c, id, [](const json& j) { return j.value("state", "") != "queued"; });
    std::this_thread::sleep_for(std::chrono::milliseconds(8 * i));
    auto del = c.Delete("/v1/generations/" + id);
    ASSERT_TRUE(del);
    if (del->status != 202) {
      EXPECT_EQ(del->status, 200) << del->body;  // already finished: forgotten
      continue;
    }
    ++promised;
    EXPECT_EQ(json::parse(del->body)["state"], "cancelled");
    const json j = poll_until(c, id, is_finished, 30);
    EXPECT_EQ(j.value("state", ""), "cancelled") << "DELETE promised cancelled: " << j.dump();
  }
  EXPECT_GT(promised, 0);
}

TEST_F(ServerTest, SyncRequestIsCancelledWhenTheClientLeavesAndBoundedBySyncTimeout) {
  ServerProcess server(assets().bundle,
                       {"--jobs-per-device", "1", "--sync-timeout", "2", "--max-clip-seconds", "4"});
  server.wait_ready();
  const int port = server.port();
  httplib::Client c("127.0.0.1", port);
  {
    RawConn conn(port);
    ASSERT_TRUE(conn.ok());
    const std::string body =
        multipart_body("b0undary", read_file(assets().long_clip),
                       {{"prompt", "x"}, {"steps", "200"}, {"max_seconds", "4"}});
    ASSERT_TRUE(conn.send_all(post_head("/generate", "b0undary", body.size()) + body));
    ASSERT_TRUE(wait_metric(c, "foley_jobs{state=\"running\"}", 1, 30)) << server.diagnostics();
  }  // the client goes away mid-generation
  EXPECT_TRUE(wait_metric(c, "foley_jobs_total{state=\"cancelled\"}", 1, 15))
      << "the abandoned synchronous job kept running";
  // A client that stays gets 504 after --sync-timeout, and the job is cancelled too.
  const auto t0 = std::chrono::steady_clock::now();
  c.set_read_timeout(30, 0);
  // 200 steps over the whole 4-s clip: well beyond the 2-s timeout on any CPU.
  auto r = c.Post("/generate", fields(assets().long_clip, "200", {{"max_seconds", "4"}}));
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  expect_clean_error(r, 504, "sync-timeout");
  EXPECT_LT(waited, 6.0);
  EXPECT_TRUE(wait_metric(c, "foley_jobs_total{state=\"cancelled\"}", 2, 15));
}

TEST_F(ServerTest, DownloadsServeRangesFromDisk) {
  httplib::Client c("127.0.0.1", shared_server().port());
  const std::string id = submit(c, fields(assets().clip, "1", {{"sample_format", "s16"}}));
  ASSERT_FALSE(id.empty());
  const json j = poll_until(c, id, is_finished);
  ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
  EXPECT_EQ(j["params"]["sample_format"], "s16");
  EXPECT_TRUE(j.contains("clipped_samples")) << j.dump();
  auto whole = c.Get("/v1/generations/" + id + "/audio");
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200);
  EXPECT_EQ(whole->get_header_value("Accept-Ranges"), "bytes");
  // 16-bit PCM: format tag 1, 16 bits per sample, 2 bytes per 0.96 s x 48 kHz sample.
  ASSERT_GE(whole->body.size(), 44u);
  EXPECT_EQ(whole->body[20], 1);
  EXPECT_EQ(whole->body[34], 16);
  EXPECT_EQ(whole->body.size(), 44u + 2 * 46080);
  auto part = c.Get("/v1/generations/" + id + "/audio", httplib::Headers{{"Range", "bytes=0-99"}});
  ASSERT_TRUE(part);
  EXPECT_EQ(part->status, 206);
  EXPECT_EQ(part->body, whole->body.substr(0, 100));
  EXPECT_EQ(part->get_header_value("Content-Range"),
            "bytes 0-99/" + std::to_string(whole->body.size()));
  auto tail = c.Get("/v1/generations/" + id + "/audio", httplib::Headers{{"Range", "bytes=-10"}});
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->status, 206);
  EXPECT_EQ(tail->body, whole->body.substr(whole->body.size() - 10));
  const std::string past = "bytes=" + std::to_string(whole->body.size()) + "-";
  expect_clean_error(c.Get("/v1/generations/" + id + "/audio", httplib::Headers{{"Range", past}}),
                     416);
}

TEST_F(ServerTest, EventStreamsAreCappedWith503Beyond) {
  ServerProcess server(assets().bundle, {"--max-streams", "2", "--jobs-per-device", "1"});
  server.wait_ready();
  const int port = server.port();
  httplib::Client c("127.0.0.1", port);
  const std::string id = submit(c, long_fields("200"));
  ASSERT_FALSE(id.empty());
  std::atomic<int> connected{0};
  std::vector<std::thread> streams;
  for (int i = 0; i < 2; ++i)
    streams.emplace_back([&] {
      httplib::Client sc("127.0.0.1", port);
      bool counted = false;
      sc.Get("/v1/generations/" + id + "/events", [&](const char*, size_t) {
        if (!counted) counted = true, ++connected;
        return true;
      });
    });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (connected < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(connected.load(), 2);
  auto third = c.Get("/v1/generations/" + id + "/events");
  expect_clean_error(third, 503);
  if (third) {
    EXPECT_FALSE(third->get_header_value("Retry-After").empty());
  }
  // Status and health still answer while the stream lane is full.
  EXPECT_LT(probe_ms(port, "/v1/generations/" + id, 200), 1e9);
  c.Delete("/v1/generations/" + id);  // the streams end with the cancelled event
  for (auto& t : streams) t.join();
}

TEST_F(ServerTest, HealthAnswersFastUnderSlowAndHalfSentClients) {
  ServerProcess server(assets().bundle, {"--threads", "2", "--io-timeout", "3"});
  server.wait_ready();
  const int port = server.port();
  // 200 clients sending a request head one byte at a time (stalled after the first bytes).
  std::vector<std::unique_ptr<RawConn>> slow;
  for (int i = 0; i < 200; ++i) {
    slow.push_back(std::make_unique<RawConn>(port));
    ASSERT_TRUE(slow.back()->ok());
    slow.back()->send_all("GET /health/live HTTP/1.1\r\nHo");
  }
  // More half-sent uploads than there are upload threads and wait slots.
  std::vector<std::unique_ptr<RawConn>> half;
  for (int i = 0; i < 8; ++i) {
    half.push_back(std::make_unique<RawConn>(port));
    half.back()->send_all(post_head("/v1/generations", "bnd", 1000000) + "--bnd\r\n");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::vector<double> ms;
  for (int i = 0; i < 10; ++i) {
    ms.push_back(probe_ms(port, "/health/live", 200));
    ms.push_back(probe_ms(port, "/health/ready", 200));
    ms.push_back(probe_ms(port, "/v1/generations/0123456789abcdef0123456789abcdef", 404));
  }
  std::sort(ms.begin(), ms.end());
  EXPECT_LT(ms[ms.size() * 9 / 10], 100.0) << "p90 of health/status probes, ms";
  EXPECT_LT(ms.back(), 1000.0) << "slowest probe, ms";
  // The stalled heads are cut off after the head timeout (min(10 s, --io-timeout)).
  EXPECT_TRUE(slow.front()->closed_by_peer(6.0));
  EXPECT_TRUE(half.front()->closed_by_peer(8.0)) << "a stalled body held its thread";
}

TEST_F(ServerTest, BodiesAreJudgedBeforeTheyAreRead) {
  ServerProcess server(assets().bundle, {"--max-upload-mb", "1"});
  server.wait_ready();
  const int port = server.port();
  const std::string big(3 << 20, 'x');
  {  // neither a length nor chunking: refused at once, not read until the client closes
    RawConn conn(port);
    conn.send_all("POST /v1/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n");
    conn.send_all(big.substr(0, 1 << 20));
    const std::string r = conn.read_response(5);
    EXPECT_EQ(status_of(r), 411) << r.substr(0, 300);
  }
  {  // a declared length over the cap: 413 before any body byte is sent
    RawConn conn(port);
    conn.send_all(post_head("/v1/generations", "b", 50u << 20));
    const std::string r = conn.read_response(5);
    EXPECT_EQ(status_of(r), 413) << r.substr(0, 300);
  }
  {  // a client asking before it sends (curl does above 1 KiB) gets the refusal, not "100 Continue"
    RawConn conn(port);
    std::string head = post_head("/v1/generations", "b", 50u << 20);
    head.insert(head.size() - 2, "Expect: 100-continue\r\n");
    conn.send_all(head);
    const std::string r = conn.read_response(5);
    EXPECT_EQ(status_of(r), 413) << r.substr(0, 300);
  }
  {  // chunked past the cap: 413 once the cap is reached, not after reading it all
    RawConn conn(port);
    conn.send_all("POST /v1/generations HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                  "boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n");
    std::string body = "--b\r\nContent-Disposition: form-data; name=\"video\"; filename=\"a.mp4\"\r\n\r\n";
    body += big;
    bool sent_all = true;
    for (size_t at = 0; at < body.size() && sent_all; at += 65536) {
      const std::string piece = body.substr(at, 65536);
      char size[32];
      std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
      sent_all = conn.send_all(size + piece + "\r\n");
    }
    const std::string r = conn.read_response(10);
    EXPECT_EQ(status_of(r), 413) << r.substr(0, 300);
  }
  EXPECT_LT(probe_ms(port, "/health/live", 200), 1e9);
}

TEST_F(ServerTest, FullOrReadOnlyDiskIs507Or503) {
  const std::string mnt = temp_dir() + "/small";
  std::filesystem::create_directories(mnt);
  if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=4m") != 0) {
    GTEST_SKIP() << "mounting a small tmpfs needs root (CAP_SYS_ADMIN): " << std::strerror(errno);
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { umount2(dir.c_str(), MNT_DETACH); }
  } unmount{mnt};
  {
    ServerProcess server(assets().bundle, {"--data-dir", mnt + "/data"});
    server.wait_ready();
    httplib::Client c("127.0.0.1", server.port());
    // Leave ~100 kB free, then upload 1 MB.
    const std::string filler = mnt + "/filler";
    {
      std::FILE* f = std::fopen(filler.c_str(), "wb");
      ASSERT_NE(f, nullptr);
      const std::string block(4096, '\0');
      while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) {
      }
      std::fclose(f);
      std::filesystem::resize_file(filler, std::filesystem::file_size(filler) - (100 << 10));
    }
    httplib::MultipartFormDataItems items = {{"video", std::string(1 << 20, 'v'), "a.mp4", ""},
                                             {"prompt", "x", "", ""}};
    auto r = c.Post("/v1/generations", items);
    const json full = expect_clean_error(r, 507);
    EXPECT_NE(full.dump().find("disk is full"), std::string::npos) << full.dump();
    std::filesystem::remove(filler);
    // The uploads folder read-only (a second, read-only mount over it; the journal beside it
    // keeps the data dir itself busy for writing).
    const std::string uploads = mnt + "/data/uploads";
    ASSERT_EQ(mount("tmpfs", uploads.c_str(), "tmpfs", MS_RDONLY, "size=1m"), 0)
        << std::strerror(errno);
    r = c.Post("/v1/generations", fields(assets().clip, "1"));
    const json ro = expect_clean_error(r, 503);
    EXPECT_NE(ro.dump().find("read-only"), std::string::npos) << ro.dump();
    ASSERT_EQ(umount2(uploads.c_str(), 0), 0);
    const std::string id = submit(c, fields(assets().clip, "1"));
    EXPECT_EQ(poll_until(c, id, is_finished).value("state", ""), "succeeded");
  }
}

TEST_F(ServerTest, SigtermExitIsBoundedByTheDrainBudget) {
  ServerProcess server(assets().bundle, {"--drain-seconds", "1", "--jobs-per-device", "1"});
  server.wait_ready();
  const int port = server.port();
  std::thread waiter([&] {  // a synchronous request whose job would run for minutes
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    c.Post("/generate", long_fields("200"));
  });
  httplib::Client idle("127.0.0.1", port);  // an idle kept-alive connection
  idle.set_keep_alive(true);
  ASSERT_TRUE(idle.Get("/health/live"));
  httplib::Client c("127.0.0.1", port);
  ASSERT_TRUE(wait_metric(c, "foley_jobs{state=\"running\"}", 1, 30));
  const auto t0 = std::chrono::steady_clock::now();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait_exit(20), 0) << server.diagnostics();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 1.0 + 2.5) << "--drain-seconds 1";
  waiter.join();
}

TEST_F(ServerTest, AcceptedJobsSurviveKill9AndRunAfterRestart) {
  namespace fs = std::filesystem;
  const std::string data = temp_dir() + "/data";
  auto count_files = [&] {
    size_t n = 0;
    for (const char* sub : {"/uploads", "/results"}) {
      std::error_code ec;
      for (auto it = fs::directory_iterator(data + sub, ec); !ec && it != fs::directory_iterator();
           it.increment(ec))
        ++n;
    }
    return n;
  };
  std::string done_id, running_id;
  std::vector<std::string> queued_ids;
  {
    ServerProcess server(assets().bundle, {"--data-dir", data, "--jobs-per-device", "1"});
    server.wait_ready();
    httplib::Client c("127.0.0.1", server.port());
    done_id = submit(c, fields(assets().clip, "1", {{"seed", "5"}}));
    ASSERT_EQ(poll_until(c, done_id, is_finished).value("state", ""), "succeeded");
    running_id = submit(c, long_fields("200"));
    for (int i = 0; i < 4; ++i)
      queued_ids.push_back(submit(c, fields(assets().clip, "1", {{"seed", std::to_string(i)}})));
    // A text-only job (no upload) is journaled and rerun like the others.
    queued_ids.push_back(submit(c, fields("", "1", {{"seconds", "1"}})));
    poll_until(c, running_id, [](const json& j) { return j.value("state", "") == "running"; });
    // A file nothing refers to, as a crash between writing and journaling would leave.
    media::write_file(data + "/results/stray.wav", "x");
    server.signal(SIGKILL);
    server.wait_exit(10);
  }
  ServerProcess again(assets().bundle, {"--data-dir", data, "--jobs-per-device", "1"});
  again.wait_ready();
  EXPECT_NE(again.output().find("7 jobs from an earlier run: 6 queued again (1 were running)"),
            std::string::npos)
      << again.output();
  EXPECT_FALSE(fs::exists(data + "/results/stray.wav")) << "orphan kept";
  httplib::Client c("127.0.0.1", again.port());
  // The finished job is still served, with its result.
  const json done = poll_until(c, done_id, is_finished);
  EXPECT_EQ(done.value("state", ""), "succeeded");
  auto audio = c.Get("/v1/generations/" + done_id + "/audio");
  ASSERT_TRUE(audio);
  EXPECT_EQ(audio->status, 200);
  // The 5 queued jobs and the one that was running all finish (the long one is cancelled to
  // keep the test short, after it has started again).
  poll_until(c, running_id, [](const json& j) { return j.value("state", "") == "running"; }, 60);
  c.Delete("/v1/generations/" + running_id);
  for (const auto& id : queued_ids)
    EXPECT_EQ(poll_until(c, id, is_finished, 120).value("state", ""), "succeeded") << id;
  EXPECT_EQ(poll_until(c, running_id, is_finished).value("state", ""), "cancelled");
  // An SSE client of an old id gets its terminal event.
  std::string stream;
  c.Get("/v1/generations/" + queued_ids[0] + "/events",
        [&](const char* d, size_t n) { stream.append(d, n); return true; });
  EXPECT_EQ(stream.rfind("event: done\n", 0), 0u) << stream;
  const json text_only = poll_until(c, queued_ids.back(), is_finished);
  EXPECT_TRUE(text_only.value("text_only", false)) << text_only.dump();
  auto text_audio = c.Get("/v1/generations/" + queued_ids.back() + "/audio");
  ASSERT_TRUE(text_audio);
  EXPECT_EQ(wav_samples(text_audio->body), 48000);
  // Each result file belongs to a finished job: 6 succeeded jobs, audio + muxed video each but
  // the text-only one's audio alone.
  EXPECT_EQ(count_files(), 11u);
}

TEST_F(ServerTest, SigtermKeepsQueuedJobsForTheNextStart) {
  const std::string data = temp_dir() + "/data";
  std::string id;
  {
    ServerProcess server(assets().bundle, {"--data-dir", data, "--jobs-per-device", "1",
                                           "--drain-seconds", "0"});
    server.wait_ready();
    httplib::Client c("127.0.0.1", server.port());
    const std::string busy = submit(c, long_fields("200"));
    id = submit(c, fields(assets().clip, "1"));
    poll_until(c, busy, [](const json& j) { return j.value("state", "") == "running"; });
    server.signal(SIGTERM);
    EXPECT_EQ(server.wait_exit(20), 0);
  }
  ServerProcess again(assets().bundle, {"--data-dir", data});
  again.wait_ready();
  httplib::Client c("127.0.0.1", again.port());
  EXPECT_EQ(poll_until(c, id, is_finished, 60).value("state", ""), "succeeded");
}

// Jobs through a Redis queue: submits `reqs` to the front end at `c`, then starts one `foley
// worker` with `worker_args` (they wait as a backlog) and collects each job's audio (empty after
// a reported failure) and the worker's log.
struct WorkerRun {
  std::vector<std::vector<float>> audio;
  std::string log;
};
WorkerRun run_on_one_worker(httplib::Client& c, const std::string& redis_url,
                            const std::string& data, const std::string& bundle,
                            const std::vector<httplib::MultipartFormDataItems>& reqs,
                            const std::vector<std::string>& worker_args) {
  std::vector<std::string> ids;
  for (const auto& r : reqs) ids.push_back(submit(c, r));
  std::vector<std::string> args = {"worker", "--queue", redis_url, "--data-dir",
                                   data,     "--model", bundle,    "--max-clip-seconds",
                                   "1"};
  args.insert(args.end(), worker_args.begin(), worker_args.end());
  ServerProcess worker(args, 0);
  WorkerRun run;
  for (const auto& id : ids) {
    const json j = poll_until(c, id, is_finished, 120);
    EXPECT_EQ(j.value("state", ""), "succeeded") << j.dump();
    auto got = c.Get("/v1/generations/" + id + "/audio");
    if (!got || got->status != 200) {
      ADD_FAILURE() << "no audio for " << id;
      run.audio.emplace_back();
      continue;
    }
    run.audio.push_back(wav_floats(got->body));
  }
  run.log = worker.output();
  return run;
}

// A Redis server, a shared data folder and one front end of the queue, for the worker tests.
struct QueueFront {
  RedisServer redis;
  std::string data;
  std::unique_ptr<ServerProcess> front;
  std::unique_ptr<httplib::Client> client;
  explicit QueueFront(const std::string& folder) : data(temp_dir() + "/" + folder) {
    std::filesystem::create_directories(data);
    front = std::make_unique<ServerProcess>(
        std::vector<std::string>{"serve", "--queue", redis.url(), "--data-dir", data, "--port", "0",
                                 "--max-clip-seconds", "1"},
        0);
    front->wait_ready();
    client = std::make_unique<httplib::Client>("127.0.0.1", front->port());
  }
  WorkerRun run(const std::string& bundle, const std::vector<httplib::MultipartFormDataItems>& reqs,
                const std::vector<std::string>& worker_args) {
    return run_on_one_worker(*client, redis.url(), data, bundle, reqs, worker_args);
  }
};

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// foley worker --max-batch 4: four jobs queued before the worker starts are taken within the
// window and denoised as one batch, each with its own seed and result; the same four requests
// through an unbatched worker give the same audio (within 1e-5, as the embedded server's
// batching test says why).
TEST_F(ServerTest, WorkerMaxBatchRunsQueuedJobsTogetherWithTheirOwnResults) {
  if (!RedisServer::available()) FOLEY_SKIP_MISSING("redis-server not installed");
  QueueFront queue("worker_batch");
  std::vector<httplib::MultipartFormDataItems> reqs;
  for (int i = 0; i < 4; ++i)
    reqs.push_back(fields(assets().clip, "2",
                          {{"seed", std::to_string(40 + i)}, {"guidance", i % 2 ? "2.5" : "4.5"}}));
  auto run_all = [&](const std::vector<std::string>& worker_args) {
    return queue.run(assets().bundle, reqs, worker_args);
  };
  const WorkerRun batched =
      run_all({"--name", "wb", "--max-batch", "4", "--batch-window-ms", "1000"});
  EXPECT_NE(batched.log.find("foley worker wb: 4 jobs run as one batch"), std::string::npos)
      << batched.log;
  const WorkerRun single = run_all({"--name", "w1", "--decode-ahead", "0"});
  EXPECT_EQ(single.log.find("run as one batch"), std::string::npos) << single.log;
  ASSERT_EQ(batched.audio.size(), single.audio.size());
  for (size_t i = 0; i < batched.audio.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_FALSE(batched.audio[i].empty());
    ASSERT_EQ(batched.audio[i].size(), single.audio[i].size());
    float worst = 0;
    for (size_t k = 0; k < batched.audio[i].size(); ++k)
      worst = std::max(worst, std::fabs(batched.audio[i][k] - single.audio[i][k]));
    EXPECT_LE(worst, 1e-5f);
    if (i > 0) {
      EXPECT_NE(batched.audio[i], batched.audio[0]) << "each job has its own seed";
    }
  }
}

// --decode-ahead: while a job runs, the worker takes the jobs waiting behind it and decodes their
// videos (Model::prepare_video); they run one at a time as --max-batch 1 says, with the same
// audio as jobs decoded in their own run.
TEST_F(ServerTest, WorkerDecodesTheWaitingJobsAheadWithTheSameResults) {
  if (!RedisServer::available()) FOLEY_SKIP_MISSING("redis-server not installed");
  QueueFront queue("worker_ahead");
  std::vector<httplib::MultipartFormDataItems> reqs;
  for (int i = 0; i < 3; ++i)
    reqs.push_back(fields(assets().clip, "2", {{"seed", std::to_string(70 + i)}}));
  const WorkerRun ahead = queue.run(assets().bundle, reqs, {"--name", "wa", "--decode-ahead", "2"});
  // The first job is taken by the idle worker; the two behind it while it runs.
  EXPECT_EQ(count_of(ahead.log, "decoded ahead"), 2u) << ahead.log;
  EXPECT_EQ(ahead.log.find("run as one batch"), std::string::npos) << ahead.log;
  const WorkerRun own = queue.run(assets().bundle, reqs, {"--name", "wo", "--decode-ahead", "0"});
  EXPECT_EQ(own.log.find("decoded ahead"), std::string::npos) << own.log;
  ASSERT_EQ(ahead.audio.size(), own.audio.size());
  for (size_t i = 0; i < ahead.audio.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_FALSE(ahead.audio[i].empty());
    EXPECT_EQ(ahead.audio[i], own.audio[i]);
  }
}

// foley worker --overlap-encoders on: two claim loops share the worker's generator, so two jobs
// run at once (one encoding while the other denoises), with the audio of a worker without it.
TEST_F(ServerTest, WorkerWithOverlappedEncodersRunsTwoJobsAtOnceWithTheSameResults) {
  if (!RedisServer::available()) FOLEY_SKIP_MISSING("redis-server not installed");
  QueueFront queue("worker_overlap");
  httplib::Client& c = *queue.client;
  std::vector<httplib::MultipartFormDataItems> reqs;
  for (int i = 0; i < 4; ++i)
    reqs.push_back(fields(assets().clip, "12", {{"seed", std::to_string(80 + i)}}));
  const WorkerRun plain =
      queue.run(assets().bundle, reqs, {"--name", "wp", "--overlap-encoders", "off"});
  std::vector<std::string> ids;
  for (const auto& r : reqs) ids.push_back(submit(c, r));
  ServerProcess worker(
      {"worker", "--queue", queue.redis.url(), "--data-dir", queue.data, "--model", assets().bundle,
       "--max-clip-seconds", "1", "--name", "wl", "--overlap-encoders", "on"},
      0);
  std::vector<std::pair<std::string, std::string>> spans;
  for (size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE(i);
    const json j = poll_until(c, ids[i], is_finished, 120);
    ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
    spans.emplace_back(j.value("started_at", ""), j.value("finished_at", ""));
    auto got = c.Get("/v1/generations/" + ids[i] + "/audio");
    ASSERT_TRUE(got && got->status == 200);
    ASSERT_LT(i, plain.audio.size());
    EXPECT_EQ(wav_floats(got->body), plain.audio[i]);
  }
  EXPECT_NE(worker.output().find("overlapped encoders: two batches at once"), std::string::npos)
      << worker.output();
  bool together = false;
  for (size_t i = 0; i < spans.size(); ++i)
    for (size_t k = i + 1; k < spans.size(); ++k)
      together |= spans[i].first < spans[k].second && spans[k].first < spans[i].second;
  EXPECT_TRUE(together) << worker.output();
}

// A job taken ahead that the worker cannot run (it names another model) ends at once, not after
// the batch in hand and the jobs before it: it finishes before the job taken ahead of it runs.
TEST_F(ServerTest, WorkerEndsAJobItCannotRunAsSoonAsItTakesItAhead) {
  if (!RedisServer::available()) FOLEY_SKIP_MISSING("redis-server not installed");
  QueueFront queue("worker_ahead_refused");
  httplib::Client& c = *queue.client;
  const std::string first = submit(c, fields(assets().clip, "2", {{"seed", "1"}}));
  const std::string second = submit(c, fields(assets().clip, "2", {{"seed", "2"}}));
  const std::string other = submit(c, fields("", "1", {{"seconds", "1"}, {"model", "xl"}}));
  ServerProcess worker(
      {"worker", "--queue", queue.redis.url(), "--data-dir", queue.data, "--model", assets().bundle,
       "--max-clip-seconds", "1", "--name", "wr", "--decode-ahead", "3"},
      0);
  for (const auto& id : {first, second})
    EXPECT_EQ(poll_until(c, id, is_finished, 120).value("state", ""), "succeeded");
  const json refused = poll_until(c, other, is_finished, 60);
  EXPECT_EQ(refused.value("state", ""), "failed") << refused.dump();
  EXPECT_NE(refused["error"].value("message", "").find("\"xl\" is not served"), std::string::npos)
      << refused.dump();
  const json ran_after = poll_until(c, second, is_finished, 60);
  // ISO times to the millisecond: their order is the string order.
  EXPECT_LT(refused.value("finished_at", ""), ran_after.value("finished_at", ""))
      << refused.dump() << "\n"
      << ran_after.dump() << "\n"
      << worker.output();
}

// Issue 16's distributed mode: two stateless front ends and two workers on one Redis. Every
// accepted job ends succeeded exactly once, with one result, through a worker killed mid-job
// (its job is taken over after the visibility timeout), a front end killed, and Redis restarted
// (AOF, fsync always).
TEST_F(ServerTest, DistributedFrontEndsAndWorkersSurviveKills) {
  if (!RedisServer::available()) FOLEY_SKIP_MISSING("redis-server not installed");
  namespace fs = std::filesystem;
  RedisServer redis;
  const std::string data = temp_dir() + "/shared";
  fs::create_directories(data);
  const double visibility = 2.0;
  auto front_end = [&] {
    return std::make_unique<ServerProcess>(
        std::vector<std::string>{"serve", "--queue", redis.url(), "--data-dir", data, "--port",
                                 "0", "--queue-size", "100", "--max-clip-seconds", "1"},
        0);
  };
  auto worker = [&](const std::string& name) {
    return std::make_unique<ServerProcess>(
        std::vector<std::string>{"worker", "--queue", redis.url(), "--data-dir", data,
                                 "--model", assets().bundle, "--name", name,
                                 "--visibility-timeout", "2", "--max-clip-seconds", "1"},
        0);
  };
  auto fe1 = front_end(), fe2 = front_end();
  std::map<std::string, std::unique_ptr<ServerProcess>> workers;
  workers["w1"] = worker("w1");
  workers["w2"] = worker("w2");
  fe1->wait_ready();
  fe2->wait_ready();
  for (auto& [name, w] : workers) w->wait_output("foley worker " + name + ": ready");
  httplib::Client c1("127.0.0.1", fe1->port()), c2("127.0.0.1", fe2->port());
  auto ready = c1.Get("/health/ready");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;

  // A long job first; then 40 short ones through both front ends.
  // (150 steps, ~2.5 s on the CPU: still running when its worker is killed on a busy machine.)
  const std::string long_id = submit(c1, long_fields("150"));
  ASSERT_FALSE(long_id.empty());
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i)
    ids.push_back(submit(i % 2 ? c2 : c1, fields(assets().clip, "1", {{"seed", std::to_string(i)}})));
  // A text-only job travels through Redis like the others.
  ids.push_back(submit(c2, fields("", "1", {{"seconds", "1"}})));
  // Kill the worker running the long job as soon as it runs it.
  RedisClient redis_client(parse_redis_url(redis.url()));
  std::string victim;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (victim.empty() && std::chrono::steady_clock::now() < deadline) {
    const RedisReply w = redis_client.command({"HGET", "foley:job:" + long_id, "worker"});
    if (w.is_string() && !w.str.empty()) victim = w.str;
    else std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(victim.empty()) << "the long job never started";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  workers[victim]->signal(SIGKILL);
  workers[victim]->wait_exit(10);
  const auto killed_at = std::chrono::system_clock::now();
  // A front end dies too: the other one still answers for every job.
  fe1->signal(SIGKILL);
  fe1->wait_exit(10);

  for (const auto& id : ids)
    EXPECT_EQ(poll_until(c2, id, is_finished, 120).value("state", ""), "succeeded") << id;
  const json long_job = poll_until(c2, long_id, is_finished, 120);
  EXPECT_EQ(long_job.value("state", ""), "succeeded") << long_job.dump();
  // Taken over within the visibility timeout + 1 s (the survivor may be mid-job: + its length).
  const RedisReply started = redis_client.command({"HGET", "foley:job:" + long_id, "started_at"});
  const double restart_delay =
      std::atof(started.str.c_str()) -
      std::chrono::duration<double>(killed_at.time_since_epoch()).count();
  EXPECT_LT(restart_delay, visibility + 1.5) << "seconds from the kill to the takeover";
  std::printf("takeover %.2f s after the kill (visibility timeout %.1f s)\n", restart_delay,
              visibility);
  const RedisReply attempts = redis_client.command({"HGET", "foley:job:" + long_id, "attempts"});
  EXPECT_EQ(attempts.str, "2");

  // Redis restarts (AOF): jobs submitted around it are not lost.
  std::vector<std::string> late;
  for (int i = 0; i < 5; ++i)
    late.push_back(submit(c2, fields(assets().clip, "1", {{"seed", std::to_string(100 + i)}})));
  redis.kill9();
  redis.restart();
  for (const auto& id : late)
    EXPECT_EQ(poll_until(c2, id, is_finished, 120).value("state", ""), "succeeded") << id;

  // One audio result per job, none duplicated; the fleet metrics saw the takeover.
  std::map<std::string, int> results;
  for (const auto& e : fs::directory_iterator(data + "/results"))
    if (e.path().extension() == ".wav") ++results[e.path().stem().string().substr(0, 32)];
  EXPECT_EQ(results.size(), ids.size() + late.size() + 1);
  for (const auto& [id, n] : results) EXPECT_EQ(n, 1) << id;
  EXPECT_GE(metric(c2, "foley_fleet_reclaimed_total"), 1);
  auto audio = c2.Get("/v1/generations/" + ids[3] + "/audio");
  ASSERT_TRUE(audio);
  EXPECT_EQ(audio->status, 200);
  EXPECT_EQ(wav_samples(audio->body), 46080);
  const json text_only = poll_until(c2, ids.back(), is_finished);
  EXPECT_TRUE(text_only.value("text_only", false)) << text_only.dump();
  EXPECT_FALSE(text_only.contains("video_url")) << text_only.dump();
  audio = c2.Get("/v1/generations/" + ids.back() + "/audio");
  ASSERT_TRUE(audio);
  EXPECT_EQ(wav_samples(audio->body), 48000);
  // Cancel reaches the worker running a job.
  const std::string doomed = submit(c2, long_fields("200"));
  poll_until(c2, doomed, [](const json& j) { return j.value("state", "") == "running"; }, 60);
  auto del = c2.Delete("/v1/generations/" + doomed);
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 202);
  const json cancelled = poll_until(c2, doomed, is_finished, 30);
  EXPECT_EQ(cancelled.value("state", ""), "cancelled") << cancelled.dump();
  EXPECT_LT(cancelled["progress"]["step"].get<int>(), 200);
  // Workers serve one model each (here "tiny", the bundle's stem): a job naming it runs, one
  // naming another fails saying so. A front end has no models of its own.
  const std::string named = submit(c2, fields("", "1", {{"seconds", "1"}, {"model", "tiny"}}));
  EXPECT_EQ(poll_until(c2, named, is_finished, 60).value("state", ""), "succeeded");
  const std::string other = submit(c2, fields("", "1", {{"seconds", "1"}, {"model", "xl"}}));
  const json refused = poll_until(c2, other, is_finished, 60);
  EXPECT_EQ(refused.value("state", ""), "failed") << refused.dump();
  EXPECT_NE(refused["error"].value("message", "").find("\"xl\" is not served"), std::string::npos)
      << refused.dump();
  expect_clean_error(c2.Get("/v1/models"), 404, "front end");
}

// ---- several models (issue 14) ----------------------------------------------------------------

// Model "big": the tiny model with a DAC twice as wide (another size, other weights), as in
// tests/registry_test.cpp; made once beside the shared assets (renamed into place).
std::string big_bundle() {
  namespace fs = std::filesystem;
  const std::string path = g_assets->dir + "/big.safetensors";
  if (fs::exists(path)) return path;
  const std::string work = g_assets->dir + "/big.partial-" + std::to_string(getpid());
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work, ec);
  std::string out;
  if (run_command(std::string(FOLEY_PYTHON) + " " + source_path("scripts/make_tiny_models.py") +
                      " " + work + "/models --seed 4 --decoder-dim 128 2>&1", &out) != 0 ||
      run_command(std::string(FOLEY_CLI) + " convert --model-dir " + work +
                      "/models --dtype f32 -o " + work + "/big.safetensors 2>&1", &out) != 0) {
    ADD_FAILURE() << out;
    return "";
  }
  fs::rename(work + "/big.safetensors", path, ec);  // another process may have made it first
  fs::remove_all(work, ec);
  return fs::exists(path) ? path : "";
}

// `foley serve` with the tiny model as "small" (the default) and the big one as "big".
std::vector<std::string> two_models(std::vector<std::string> extra) {
  std::vector<std::string> args = {"serve",           "--model", "small=" + g_assets->bundle,
                                   "--model",         "big=" + big_bundle(),
                                   "--max-clip-seconds", "1",    "--port", "0"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

json get_models(httplib::Client& c) {
  auto r = c.Get("/v1/models");
  EXPECT_TRUE(r);
  if (!r) return {};
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body, nullptr, false);
}

json model_of(const json& models, const std::string& name) {
  for (const auto& m : models.value("models", json::array()))
    if (m.value("name", "") == name) return m;
  ADD_FAILURE() << "no model " << name << " in " << models.dump();
  return json::object();
}

// A short text-only job on `model` (1 s of audio, 2 steps).
httplib::MultipartFormDataItems text_job(const std::string& model, const std::string& seed = "5") {
  return fields("", "2", {{"seconds", "1"}, {"seed", seed}, {"model", model}});
}

TEST_F(ServerTest, ModelsAreListedAndLoadedWhenAJobNamesOne) {
  ASSERT_FALSE(big_bundle().empty());
  ServerProcess server(two_models({}), 0);
  server.wait_ready();
  const int port = server.port();
  httplib::Client c("127.0.0.1", port);
  json models = get_models(c);
  ASSERT_EQ(models["models"].size(), 2u) << models.dump();
  EXPECT_EQ(models["default"], "small");
  const json small0 = model_of(models, "small"), big0 = model_of(models, "big");
  EXPECT_EQ(small0["state"], "loaded") << "the first model is preloaded";
  EXPECT_TRUE(small0["default"].get<bool>());
  EXPECT_GT(small0["bytes"].get<int64_t>(), 0);
  EXPECT_EQ(big0["state"], "unloaded");
  EXPECT_FALSE(big0["default"].get<bool>());
  EXPECT_EQ(big0["bytes"], 0);
  EXPECT_TRUE(big0["last_used"].is_null());
  EXPECT_EQ(big0["bundle"], "big.safetensors") << "the API tells file names, not paths";
  EXPECT_GT(big0["file_bytes"].get<int64_t>(), small0["file_bytes"].get<int64_t>());
  EXPECT_EQ(models["used_bytes"], small0["bytes"]);
  EXPECT_EQ(models["budget_bytes"], 0);

  // An unknown model: 400 naming the field and the models there are; no job is made.
  const double before = metric(c, "foley_jobs_total{state=\"submitted\"}");
  const json bad =
      expect_clean_error(c.Post("/v1/generations", text_job("nope")), 400, "model");
  EXPECT_NE(bad.dump().find("small, big"), std::string::npos) << bad.dump();
  expect_clean_error(c.Post("/v1/generations", R"({"prompt":"x","seconds":1,"model":"x y"})",
                            "application/json"),
                     400, "model");
  EXPECT_EQ(metric(c, "foley_jobs_total{state=\"submitted\"}"), before);
  expect_clean_error(c.Post("/v1/models/nope/load"), 404, "small, big");
  expect_clean_error(c.Post("/v1/models/nope/unload"), 404);

  // A job for "big" waits behind a long one (one worker on the CPU), so its event stream is
  // open before it starts: the stream shows the model loading, then the job's own stages.
  const std::string blocker = submit(c, long_fields("200"));
  ASSERT_FALSE(blocker.empty());
  const std::string id = submit(c, text_job("big"));
  ASSERT_FALSE(id.empty());
  std::mutex stream_mutex;
  std::string stream;
  std::thread reader([&] {
    httplib::Client sc("127.0.0.1", port);
    sc.set_read_timeout(120, 0);
    sc.Get("/v1/generations/" + id + "/events", [&](const char* data, size_t n) {
      std::lock_guard<std::mutex> lock(stream_mutex);
      stream.append(data, n);
      return true;
    });
  });
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard<std::mutex> lock(stream_mutex);
      if (stream.find("event: queued") != std::string::npos) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto del = c.Delete("/v1/generations/" + blocker);
  ASSERT_TRUE(del);
  reader.join();
  const size_t loading = stream.find("\"stage\":\"loading_model\"");
  EXPECT_NE(loading, std::string::npos) << stream;
  EXPECT_NE(stream.find("\"model\":\"big\""), std::string::npos) << stream;
  EXPECT_LT(loading, stream.find("event: done")) << stream;
  const json j = poll_until(c, id, is_finished);
  ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
  EXPECT_EQ(j["params"]["model"], "big");
  EXPECT_TRUE(j["timings"].contains("load_model")) << j.dump();
  EXPECT_EQ(poll_until(c, blocker, is_finished)["params"]["model"], "small")
      << "a request that names no model gets the default one";
  models = get_models(c);
  const json big1 = model_of(models, "big");
  EXPECT_EQ(big1["state"], "loaded");
  EXPECT_EQ(big1["loads"], 1);
  EXPECT_EQ(big1["requests"], 1);
  EXPECT_EQ(big1["running"], 0);
  EXPECT_FALSE(big1["last_used"].is_null());
  EXPECT_GT(big1["bytes"].get<int64_t>(), 0);
  EXPECT_GT(big1["last_load_seconds"].get<double>(), 0);
  EXPECT_EQ(models["used_bytes"].get<int64_t>(),
            big1["bytes"].get<int64_t>() + model_of(models, "small")["bytes"].get<int64_t>());
  EXPECT_EQ(metric(c, "foley_model_loaded{model=\"big\"}"), 1);
  EXPECT_EQ(metric(c, "foley_model_requests_total{model=\"big\"}"), 1);
  EXPECT_EQ(metric(c, "foley_model_loads_total{model=\"big\"}"), 1);
  EXPECT_EQ(metric(c, "foley_model_evictions_total{model=\"small\"}"), 0);
  EXPECT_EQ(metric(c, "foley_model_bytes{model=\"big\"}"), big1["bytes"].get<double>());
  EXPECT_GT(metric(c, "foley_model_load_seconds{model=\"big\"}"), 0);
  EXPECT_EQ(metric(c, "foley_models_budget_bytes"), 0);

  // Unloading is refused (409) while the model runs a job, and works once it ended.
  const std::string running = submit(
      c, fields(assets().long_clip, "200", {{"max_seconds", "1"}, {"model", "big"}}));
  ASSERT_FALSE(running.empty());
  poll_until(c, running, [](const json& r) {
    const json& stage = r["progress"]["stage"];
    return is_finished(r) || (stage.is_string() && stage != "loading_model");
  });
  expect_clean_error(c.Post("/v1/models/big/unload"), 409, "running");
  c.Delete("/v1/generations/" + running);
  EXPECT_EQ(poll_until(c, running, is_finished).value("state", ""), "cancelled");
  auto unload = c.Post("/v1/models/big/unload");
  ASSERT_TRUE(unload);
  ASSERT_EQ(unload->status, 200) << unload->body;
  EXPECT_EQ(json::parse(unload->body)["state"], "unloaded");
  EXPECT_EQ(json::parse(unload->body)["bytes"], 0);
  EXPECT_EQ(metric(c, "foley_model_loaded{model=\"big\"}"), 0);
  // Loading by hand answers once the model is loaded.
  auto load = c.Post("/v1/models/big/load");
  ASSERT_TRUE(load);
  ASSERT_EQ(load->status, 200) << load->body;
  EXPECT_EQ(json::parse(load->body)["state"], "loaded");
  EXPECT_EQ(json::parse(load->body)["loads"], 2);
}

// Two models that cannot both be loaded (--vram-budget for the larger and half the smaller),
// two workers, jobs alternating between the models: each ends with its own model's answer
// (compared with each model's result on a server holding both), the models are swapped.
TEST_F(ServerTest, ABudgetForOneModelSwapsModelsWithoutMixUps) {
  ASSERT_FALSE(big_bundle().empty());
  std::map<std::string, std::string> want;
  int64_t small_bytes = 0, big_bytes = 0;
  {
    // Both preloaded: /health/ready turns 200 only once both are loaded and warm.
    ServerProcess server(two_models({"--preload", "small", "big", "--jobs-per-device", "2"}), 0);
    httplib::Client c("127.0.0.1", server.port());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(180);
    bool ready = false;
    while (!ready && std::chrono::steady_clock::now() < deadline) {
      auto r = c.Get("/health/ready");
      ready = r && r->status == 200;
      if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(ready) << server.diagnostics();
    const json models = get_models(c);
    EXPECT_EQ(model_of(models, "small")["state"], "loaded") << "ready before the preloads";
    EXPECT_EQ(model_of(models, "big")["state"], "loaded") << "ready before the preloads";
    small_bytes = model_of(models, "small")["bytes"].get<int64_t>();
    big_bytes = model_of(models, "big")["bytes"].get<int64_t>();
    for (const char* m : {"small", "big"}) {
      const std::string id = submit(c, text_job(m));
      ASSERT_EQ(poll_until(c, id, is_finished).value("state", ""), "succeeded");
      auto audio = c.Get("/v1/generations/" + id + "/audio");
      ASSERT_TRUE(audio);
      ASSERT_EQ(audio->status, 200);
      want[m] = audio->body;
    }
  }
  ASSERT_GT(small_bytes, 0);
  ASSERT_GT(big_bytes, 0);
  ASSERT_NE(want["small"], want["big"]);
  const int64_t budget = std::max(small_bytes, big_bytes) + std::min(small_bytes, big_bytes) / 2;
  char gb[32];
  std::snprintf(gb, sizeof gb, "%.9f", double(budget) / 1e9);
  ServerProcess server(
      two_models({"--vram-budget", gb, "--jobs-per-device", "2", "--queue-size", "16"}), 0);
  server.wait_ready();
  httplib::Client c("127.0.0.1", server.port());
  std::vector<std::pair<std::string, std::string>> jobs;  // id, model
  for (int i = 0; i < 6; ++i) {
    const std::string m = i % 2 ? "big" : "small";
    jobs.emplace_back(submit(c, text_job(m)), m);
  }
  for (const auto& [id, m] : jobs) {
    const json j = poll_until(c, id, is_finished, 180);
    ASSERT_EQ(j.value("state", ""), "succeeded") << j.dump();
    EXPECT_EQ(j["params"]["model"], m);
    auto audio = c.Get("/v1/generations/" + id + "/audio");
    ASSERT_TRUE(audio);
    EXPECT_TRUE(audio->body == want[m]) << "job " << id << " on " << m
                                        << " did not get that model's answer";
  }
  const json models = get_models(c);
  const json small = model_of(models, "small"), big = model_of(models, "big");
  std::printf("[models] small %.1f MB, big %.1f MB, budget %.1f MB; loads %d/%d, evictions %d/%d\n",
              small_bytes / 1e6, big_bytes / 1e6, budget / 1e6, small["loads"].get<int>(),
              big["loads"].get<int>(), small["evictions"].get<int>(), big["evictions"].get<int>());
  EXPECT_NEAR(models["budget_bytes"].get<double>(), double(budget), 2.0);
  EXPECT_LE(models["used_bytes"].get<int64_t>(), models["budget_bytes"].get<int64_t>());
  EXPECT_EQ(small["requests"], 3);
  EXPECT_EQ(big["requests"], 3);
  EXPECT_GE(small["evictions"].get<int>() + big["evictions"].get<int>(), 1) << models.dump();
  EXPECT_GE(small["loads"].get<int>() + big["loads"].get<int>(), 3) << models.dump();
  EXPECT_GE(metric(c, "foley_model_evictions_total{model=\"small\"}") +
                metric(c, "foley_model_evictions_total{model=\"big\"}"),
            1);
}

// Mistakes in the model flags stop the start with a message: a budget smaller than the default
// model, a --preload that names no model, two models of one name.
TEST_F(ServerTest, ModelFlagMistakesStopTheStart) {
  ASSERT_FALSE(big_bundle().empty());
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {two_models({"--vram-budget", "0.000001"}), "budget"},
      {two_models({"--preload", "nope"}), "--preload nope"},
      {{"serve", "--model", "a=" + assets().bundle, "--model", "a=" + big_bundle(), "--port", "0"},
       "\"a\""},
  };
  for (const auto& [args, says] : cases) {
    ServerProcess server(args, 0);
    EXPECT_GT(server.wait_exit(120), 0) << says;
    EXPECT_NE(server.diagnostics().find(says), std::string::npos) << server.diagnostics();
  }
}

}  // namespace
}  // namespace foley::test

#endif  // FOLEY_HAVE_HTTP
