// End-to-end tests of `foley serve`: the real binary on port 0 with a tiny model bundle, talked to
// over real HTTP (httplib::Client). Covers readiness, submit/poll/download, SSE, cancel, the
// bounded queue, bad uploads and parameters, auth, 20 concurrent clients and the SIGTERM drain.
#ifdef FOLEY_HAVE_HTTP

#include <gtest/gtest.h>
#include <httplib.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

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

#include "media_clips.h"
#include "test_util.h"

namespace foley::test {
namespace {

using nlohmann::json;
using media::read_file;

// `foley serve --port 0 ...` as a child process; its stdout is collected to learn the port and
// when it is ready. Killed (SIGKILL) when the object goes away.
class ServerProcess {
 public:
  ServerProcess(const std::string& bundle, std::vector<std::string> extra) {
    std::vector<std::string> args = {FOLEY_CLI, "serve", "--model", bundle, "--port", "0",
                                     "--max-clip-seconds", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
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

  int port() {
    const std::string marker = "listening on http://127.0.0.1:";
    wait_for(marker, 60);
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t at = output_.find(marker);
    return at == std::string::npos ? 0 : std::atoi(output_.c_str() + at + marker.size());
  }
  void wait_ready() { ASSERT_TRUE(wait_for("foley serve: ready on", 180)) << diagnostics(); }
  void signal(int sig) { kill(pid_, sig); }
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
    if (!media::have_ffmpeg_cli()) GTEST_SKIP() << "ffmpeg CLI not installed";
    if (!g_assets && !have_python_torch())
      GTEST_SKIP() << "python3-torch needed for the tiny model";
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
  return j.value("id", "");
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
                        "/metrics", "/health/ready"})
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
                        "foley_model_load_seconds ", "foley_device_memory_bytes "})
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
  const std::string id = submit(c, fields(assets().long_clip, "200"));
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
    auto r = c.Post("/v1/generations", fields(assets().long_clip, "200"));
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
  // While the running job finishes, readiness says draining and new work is refused.
  bool saw_draining = false;
  for (int i = 0; i < 200 && !saw_draining; ++i) {
    auto r = c.Get("/health/ready");
    if (!r) break;  // already gone
    saw_draining = r->status == 503 && json::parse(r->body)["status"] == "draining";
    if (saw_draining) expect_clean_error(c.Post("/v1/generations", fields(assets().clip, "2")), 503);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server.wait_exit(60), 0);
  EXPECT_NE(server.output().find("foley serve: draining"), std::string::npos) << server.output();
  EXPECT_NE(server.output().find("foley serve: stopped"), std::string::npos) << server.output();
}

}  // namespace
}  // namespace foley::test

#endif  // FOLEY_HAVE_HTTP
