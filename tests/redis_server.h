// A real redis-server (Debian's /usr/bin/redis-server) per test, on a free loopback port, in a
// fresh temporary directory, with an fsync-always AOF so that kill9() + restart() keeps every
// acknowledged write. Header-only so any test file can use it.
//
//   if (!foley::test::RedisServer::available()) FOLEY_SKIP_MISSING("redis-server not installed");
//   foley::test::RedisServer redis;          // started and answering PING
//   RedisClient c(parse_redis_url(redis.url()));
//
// The child gets PR_SET_PDEATHSIG(SIGKILL), so a test binary that crashes or is killed never
// leaves a server behind. Note: the signal fires when the *thread* that constructed (or last
// restarted) the server exits, so create it on the test's own thread.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace foley::test {

class RedisServer {
 public:
  static constexpr const char* kBinary = "/usr/bin/redis-server";

  static bool available() { return ::access(kBinary, X_OK) == 0; }

  // password: non-empty adds `requirepass` (clients then need redis://:password@...).
  explicit RedisServer(std::string password = "") : password_(std::move(password)) {
    make_dir();
    std::string last_error;
    // A port picked by binding port 0 can be taken by someone else before redis binds it:
    // retry with a fresh one when redis exits at start-up.
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      write_config();
      if (launch(&last_error)) return;
    }
    std::filesystem::remove_all(dir_);
    throw std::runtime_error("RedisServer: could not start redis-server: " + last_error);
  }

  ~RedisServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string url() const {
    const std::string auth = password_.empty() ? "" : ":" + password_ + "@";
    return "redis://" + auth + "127.0.0.1:" + std::to_string(port_) + "/0";
  }
  const std::string& dir() const { return dir_; }
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // SIGTERM (redis flushes the AOF and exits), then wait; SIGKILL after 10 s.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (true) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || (r < 0 && errno != EINTR)) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
  }

  // A crash: no shutdown, no final fsync (appendfsync always already wrote every write).
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  // Starts again on the same port and directory (stopping first if still running): the AOF
  // brings the data back. Throws if the port is no longer free or redis does not come up.
  void restart() {
    stop();
    std::string error;
    // The old listening socket is gone with the process; a short retry covers a slow release.
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (launch(&error)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    throw std::runtime_error("RedisServer: restart on port " + std::to_string(port_) +
                             " failed: " + error);
  }

  // The server's log (stdout and stderr), for failure messages.
  std::string log() const {
    std::ifstream in(dir_ + "/redis.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  void make_dir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                       "/foley-redis-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("RedisServer: mkdtemp: " + std::string(std::strerror(errno)));
    }
    dir_ = tmpl;
  }

  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("RedisServer: socket: " + std::string(strerror(errno)));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      const std::string e = strerror(errno);
      ::close(fd);
      throw std::runtime_error("RedisServer: bind port 0: " + e);
    }
    ::close(fd);
    return ntohs(addr.sin_port);
  }

  // A config-file argument in double quotes (redis accepts \\ and \" escapes there).
  static std::string quoted(const std::string& s) {
    std::string q = "\"";
    for (char ch : s) {
      if (ch == '\\' || ch == '"') q += '\\';
      q += ch;
    }
    return q + "\"";
  }

  void write_config() const {
    std::ofstream conf(dir_ + "/redis.conf", std::ios::trunc);
    conf << "port " << port_ << "\n"
         << "bind 127.0.0.1\n"
         << "dir " << quoted(dir_) << "\n"
         << "appendonly yes\n"
         << "appendfsync always\n"
         << "save \"\"\n"
         << "daemonize no\n"
         << "protected-mode yes\n"
         << "logfile \"\"\n";
    if (!password_.empty()) conf << "requirepass " << quoted(password_) << "\n";
    if (!conf) throw std::runtime_error("RedisServer: cannot write " + dir_ + "/redis.conf");
  }

  // Forks redis-server and waits (10 s) until it answers PING. False (with *error) if it exited
  // or never answered; the child is then reaped.
  bool launch(std::string* error) {
    const std::string conf = dir_ + "/redis.conf";
    const std::string log_path = dir_ + "/redis.log";
    const pid_t parent = ::getpid();
    const size_t log_size_before = log().size();
    const pid_t pid = ::fork();
    if (pid < 0) {
      *error = "fork: " + std::string(strerror(errno));
      return false;
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
      const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO) ::close(fd);
      }
      const char* argv[] = {"redis-server", conf.c_str(), nullptr};
      ::execv(kBinary, const_cast<char* const*>(argv));
      ::_exit(127);
    }
    pid_ = pid;
    const size_t log_start = log_size_before;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        *error = "redis-server exited at start-up (status " + std::to_string(status) +
                 "); log:\n" + log();
        return false;
      }
      // Our own server's log line too: a foreign server that took the port could answer PING.
      if (log().find("Ready to accept connections", log_start) != std::string::npos &&
          answers_ping() && ::waitpid(pid_, &status, WNOHANG) == 0) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill9();
    *error = "redis-server did not answer PING within 10 s; log:\n" + log();
    return false;
  }

  // +PONG, or -NOAUTH when a password is required: either way the server is up (and done
  // loading the AOF: while loading it answers -LOADING).
  bool answers_ping() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      const char ping[] = "PING\r\n";
      if (::send(fd, ping, sizeof(ping) - 1, MSG_NOSIGNAL) == sizeof(ping) - 1) {
        char buf[64] = {};
        const ssize_t n = ::recv(fd, buf, sizeof(buf) - 1, 0);
        if (n > 0) {
          const std::string reply(buf, static_cast<size_t>(n));
          ok = reply.rfind("+PONG", 0) == 0 || reply.rfind("-NOAUTH", 0) == 0;
        }
      }
    }
    ::close(fd);
    return ok;
  }

  std::string password_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace foley::test
