#include "redis_client.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <ctime>
#include <memory>
#include <utility>

namespace foley_server {

namespace {

constexpr const char* kScheme = "redis://";

int parse_int(const std::string& text, const char* what, const std::string& url, int lo, int hi) {
  int value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < lo || value > hi) {
    throw std::invalid_argument("redis URL '" + url + "': " + what + " '" + text +
                                "' is not a number in " + std::to_string(lo) + ".." +
                                std::to_string(hi));
  }
  return value;
}

timeval to_timeval(double seconds) {
  if (!(seconds > 0) || !std::isfinite(seconds)) {
    throw std::invalid_argument("redis timeout must be a positive number of seconds");
  }
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;
  return tv;
}

RedisReply convert(const redisReply* r) {
  RedisReply out;
  if (r == nullptr) return out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:  // REDIS_REPLY_NIL (RESP2 only: no RESP3 types reach here)
      out.type = RedisReply::Type::kNil;
      break;
  }
  return out;
}

struct ReplyDeleter {
  void operator()(void* r) const { freeReplyObject(r); }
};

// hiredis writes with write(2): a peer that went away raises SIGPIPE, which would kill a process
// that has not ignored it. Block it on this thread for the call and drop one raised meanwhile.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~SigpipeGuard() {
    if (!blocked_) return;
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{0, 0};
        const int saved = errno;
        while (sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
        }
        errno = saved;
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
  bool blocked_ = false;
};

}  // namespace

RedisUrl parse_redis_url(const std::string& url) {
  const std::string scheme(kScheme);
  if (url.compare(0, scheme.size(), scheme) != 0) {
    if (url.rfind("rediss://", 0) == 0) {
      throw std::invalid_argument("redis URL '" + url + "': TLS (rediss://) is not supported");
    }
    throw std::invalid_argument("redis URL '" + url + "': must start with redis://");
  }
  RedisUrl out;
  std::string rest = url.substr(scheme.size());
  // The password may contain '@' or '/', so the host part starts after the last '@'.
  const size_t at = rest.rfind('@');
  std::string safe_url = url;
  if (at != std::string::npos) {
    const std::string userinfo = rest.substr(0, at);
    safe_url = scheme + ":***@" + rest.substr(at + 1);
    if (userinfo.empty() || userinfo[0] != ':') {
      throw std::invalid_argument("redis URL '" + safe_url +
                                  "': only a password is supported (redis://:password@host), "
                                  "not a user name");
    }
    out.password = userinfo.substr(1);
    if (out.password.empty()) {
      throw std::invalid_argument("redis URL '" + safe_url + "': empty password after ':'");
    }
    rest = rest.substr(at + 1);
  }
  // host[:port][/db]
  std::string hostport = rest;
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    hostport = rest.substr(0, slash);
    const std::string db = rest.substr(slash + 1);
    if (!db.empty()) out.db = parse_int(db, "database", safe_url, 0, 1 << 30);
  }
  std::string host = hostport;
  std::string port;
  if (!hostport.empty() && hostport[0] == '[') {  // [ipv6]:port
    const size_t close = hostport.find(']');
    if (close == std::string::npos) {
      throw std::invalid_argument("redis URL '" + safe_url + "': unterminated '[' in host");
    }
    host = hostport.substr(1, close - 1);
    const std::string after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        throw std::invalid_argument("redis URL '" + safe_url + "': junk after ']' in host");
      }
      port = after.substr(1);
      if (port.empty()) throw std::invalid_argument("redis URL '" + safe_url + "': empty port");
    }
  } else {
    const size_t colon = hostport.find(':');
    if (colon != std::string::npos) {
      host = hostport.substr(0, colon);
      port = hostport.substr(colon + 1);
      if (port.empty()) throw std::invalid_argument("redis URL '" + safe_url + "': empty port");
    }
  }
  if (host.empty()) throw std::invalid_argument("redis URL '" + safe_url + "': no host");
  if (host.find_first_of("?#@ ") != std::string::npos) {
    throw std::invalid_argument("redis URL '" + safe_url + "': bad character in host '" + host +
                                "'");
  }
  out.host = host;
  if (!port.empty()) out.port = parse_int(port, "port", safe_url, 1, 65535);
  return out;
}

std::string to_string(const RedisUrl& u) {
  const bool v6 = u.host.find(':') != std::string::npos;
  std::string s = "redis://";
  if (!u.password.empty()) s += ":***@";
  if (v6) s += '[';
  s += u.host;
  if (v6) s += ']';
  s += ':';
  s += std::to_string(u.port);
  s += '/';
  s += std::to_string(u.db);
  return s;
}

RedisError::RedisError(const std::string& what, bool connection)
    : std::runtime_error(what), connection_(connection) {}

const std::string& RedisReply::as_string() const {
  if (type == Type::kString) return str;
  if (type == Type::kError) throw RedisError(str, false);
  throw RedisError("redis reply is not a string", false);
}

long long RedisReply::as_integer() const {
  if (type == Type::kInteger) return integer;
  if (type == Type::kError) throw RedisError(str, false);
  throw RedisError("redis reply is not an integer", false);
}

const RedisReply& RedisReply::at(size_t i) const {
  if (type != Type::kArray) throw RedisError("redis reply is not an array", false);
  if (i >= elements.size()) {
    throw RedisError("redis reply has " + std::to_string(elements.size()) +
                         " elements, wanted element " + std::to_string(i),
                     false);
  }
  return elements[i];
}

RedisClient::RedisClient(RedisUrl url, double timeout_seconds)
    : url_(std::move(url)), connect_timeout_(timeout_seconds), timeout_(timeout_seconds) {
  to_timeval(timeout_seconds);  // validates
  connect();
}

RedisClient::~RedisClient() { disconnect(); }

void RedisClient::disconnect() {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
}

void RedisClient::fail_connection(const std::string& during) {
  std::string why = ctx_ != nullptr && ctx_->errstr[0] != '\0' ? ctx_->errstr : "unknown error";
  if (why.find("temporarily unavailable") != std::string::npos) {
    why = "timed out (" + why + ")";  // SO_RCVTIMEO expired: the reply may still come, so we drop
  }
  disconnect();
  throw RedisError("redis " + url_.host + ":" + std::to_string(url_.port) + ": " + during +
                       ": " + why,
                   true);
}

void RedisClient::connect() {
  disconnect();
  SigpipeGuard guard;
  ctx_ = redisConnectWithTimeout(url_.host.c_str(), url_.port, to_timeval(connect_timeout_));
  if (ctx_ == nullptr) {
    throw RedisError("redis " + url_.host + ":" + std::to_string(url_.port) +
                         ": connect: out of memory",
                     true);
  }
  if (ctx_->err != 0) fail_connection("connect");
  if (redisSetTimeout(ctx_, to_timeval(timeout_)) != REDIS_OK) fail_connection("set timeout");
  redisEnableKeepAlive(ctx_);
  auto setup = [&](const std::vector<std::string>& argv, const char* what) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    std::unique_ptr<redisReply, ReplyDeleter> r(static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), ptrs.data(), lens.data())));
    if (!r) fail_connection(what);
    if (r->type == REDIS_REPLY_ERROR) {
      // Redis answered: a wrong password or database is not cured by retrying.
      std::string msg = "redis " + url_.host + ":" + std::to_string(url_.port) + ": " + what +
                        ": " + std::string(r->str, r->len);
      disconnect();
      throw RedisError(msg, false);
    }
  };
  if (!url_.password.empty()) setup({"AUTH", url_.password}, "AUTH");
  if (url_.db != 0) setup({"SELECT", std::to_string(url_.db)}, "SELECT");
}

void RedisClient::ensure_connected() {
  if (ctx_ == nullptr || ctx_->err != 0) connect();
}

void RedisClient::set_timeout(double seconds) {
  const timeval tv = to_timeval(seconds);
  timeout_ = seconds;
  if (ctx_ != nullptr && ctx_->err == 0 && redisSetTimeout(ctx_, tv) != REDIS_OK) {
    disconnect();  // the next command reconnects with the new timeout
  }
}

RedisReply RedisClient::command(const std::vector<std::string>& argv) {
  if (argv.empty()) throw RedisError("redis command: empty argv", false);
  ensure_connected();
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (const auto& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  std::unique_ptr<redisReply, ReplyDeleter> r;
  {
    SigpipeGuard guard;
    r.reset(static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), ptrs.data(), lens.data())));
  }
  if (!r) fail_connection(argv[0]);
  RedisReply out = convert(r.get());
  if (out.type == RedisReply::Type::kError) throw RedisError(out.str, false);
  return out;
}

std::vector<RedisReply> RedisClient::pipeline(
    const std::vector<std::vector<std::string>>& commands) {
  std::vector<RedisReply> out;
  if (commands.empty()) return out;
  for (const auto& argv : commands) {
    if (argv.empty()) throw RedisError("redis pipeline: empty argv", false);
  }
  ensure_connected();
  SigpipeGuard guard;
  for (const auto& argv : commands) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), ptrs.data(), lens.data()) !=
        REDIS_OK) {
      fail_connection("pipeline");
    }
  }
  out.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
      fail_connection("pipeline (" + std::to_string(i) + " of " +
                      std::to_string(commands.size()) + " replies read)");
    }
    std::unique_ptr<redisReply, ReplyDeleter> r(static_cast<redisReply*>(raw));
    out.push_back(convert(r.get()));
  }
  return out;
}

bool RedisClient::ping() noexcept {
  try {
    const RedisReply r = command({"PING"});
    return r.type == RedisReply::Type::kString && r.str == "PONG";
  } catch (...) {
    return false;
  }
}

}  // namespace foley_server
