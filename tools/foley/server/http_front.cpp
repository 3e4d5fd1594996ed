#include "http_front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace foley_server {

namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

SteadyClock::time_point after(double seconds) {
  return SteadyClock::now() +
         std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
}

const char* reason_phrase(int status) {
  switch (status) {
    case 408: return "Request Timeout";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

// A whole response written by the gate itself, for requests that never reach a handler. The
// socket is non-blocking: a client that does not read gets what fits and then the close.
void send_canned(int fd, int status, const std::string& code, const std::string& message,
                 int retry_after) {
  const std::string body =
      R"({"error":{"code":")" + code + R"(","message":")" + message + "\"}}";
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
                    "\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nConnection: close\r\n";
  if (retry_after > 0) out += "Retry-After: " + std::to_string(retry_after) + "\r\n";
  out += "\r\n" + body;
  (void)::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The stream a handler thread reads the request from and writes the answer to: first the bytes
// the gate already read (the head, maybe the start of the body), then the socket. Every wait is
// sliced so a shutdown deadline is noticed, and the body is capped in size and in slowness.

class GateStream : public httplib::Stream {
 public:
  GateStream(const FrontLimits& limits, const std::atomic<int64_t>& stop_deadline_ns, int fd,
             std::string buffered)
      : limits_(limits), stop_deadline_ns_(stop_deadline_ns), fd_(fd),
        buffered_(std::move(buffered)) {
    const size_t end = buffered_.find("\r\n\r\n");
    head_bytes_ = end == std::string::npos ? buffered_.size() : end + 4;
  }

  bool is_readable() const override {
    return pos_ < buffered_.size() || wait(POLLIN, limits_.io_timeout_seconds);
  }
  bool is_writable() const override { return wait(POLLOUT, limits_.io_timeout_seconds); }

  ssize_t read(char* ptr, size_t size) override {
    if (size == 0) return 0;
    const size_t limit = head_bytes_ + limits_.max_body_bytes;
    if (delivered_ >= limit) return fail();
    size = std::min(size, limit - delivered_);
    if (pos_ < buffered_.size()) {
      const size_t n = std::min(size, buffered_.size() - pos_);
      std::memcpy(ptr, buffered_.data() + pos_, n);
      pos_ += n;
      delivered_ += n;
      return ssize_t(n);
    }
    if (delivered_ > head_bytes_ && too_slow()) return fail();
    if (!wait(POLLIN, limits_.io_timeout_seconds)) return fail();
    const ssize_t n = ::recv(fd_, ptr, size, MSG_DONTWAIT);
    if (n <= 0) return fail();
    if (delivered_ <= head_bytes_ && body_started_ == SteadyClock::time_point{})
      body_started_ = SteadyClock::now();
    delivered_ += size_t(n);
    return n;
  }

  ssize_t write(const char* ptr, size_t size) override {
    size_t done = 0;
    while (done < size) {
      if (!wait(POLLOUT, limits_.io_timeout_seconds)) return done ? ssize_t(done) : -1;
      const ssize_t n = ::send(fd_, ptr + done, size - done, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return done ? ssize_t(done) : -1;
      done += size_t(n);
    }
    return ssize_t(done);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address(&::getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address(&::getsockname, ip, port);
  }
  socket_t socket() const override { return fd_; }

  bool must_close() const { return must_close_; }
  void set_must_close() { must_close_ = true; }
  size_t body_bytes() const { return delivered_ > head_bytes_ ? delivered_ - head_bytes_ : 0; }
  // Bytes read from the socket past this request (a pipelined next request).
  std::string leftover() const { return buffered_.substr(std::min(pos_, buffered_.size())); }
  bool peer_gone() const {
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }

 private:
  ssize_t fail() {
    must_close_ = true;
    return -1;
  }

  // The body so far arrived slower than the floor, measured once a timeout's worth has passed.
  bool too_slow() const {
    if (body_started_ == SteadyClock::time_point{}) return false;
    const double elapsed =
        std::chrono::duration<double>(SteadyClock::now() - body_started_).count();
    if (elapsed < limits_.io_timeout_seconds) return false;
    return double(body_bytes()) / elapsed < limits_.min_body_bytes_per_second;
  }

  bool wait(short events, double timeout_seconds) const {
    const auto deadline = after(timeout_seconds);
    for (;;) {
      const int64_t stop = stop_deadline_ns_.load();
      if (stop != 0 && now_ns() > stop) return false;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - SteadyClock::now())
                            .count();
      if (left <= 0) return false;
      pollfd p{fd_, events, 0};
      const int r = ::poll(&p, 1, int(std::min<int64_t>(left, 100)));
      if (r > 0) return true;  // ready, or an error the next call reports
      if (r < 0 && errno != EINTR) return false;
    }
  }

  void address(int (*get)(int, sockaddr*, socklen_t*), std::string& ip, int& port) const {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ip.clear();
    port = -1;
    if (get(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return;
    char text[INET6_ADDRSTRLEN] = {};
    if (addr.ss_family == AF_INET) {
      const auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
      port = ntohs(a->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      const auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
      ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
      port = ntohs(a->sin6_port);
    }
    ip = text;
  }

  const FrontLimits& limits_;
  const std::atomic<int64_t>& stop_deadline_ns_;
  int fd_;
  std::string buffered_;
  size_t pos_ = 0;
  size_t head_bytes_ = 0;
  size_t delivered_ = 0;
  SteadyClock::time_point body_started_{};
  bool must_close_ = false;
};

namespace {
thread_local GateStream* t_stream = nullptr;
}  // namespace

// ---------------------------------------------------------------------------------------------
// The gate: one epoll thread owning every connection that is not being served.

class Gate {
 public:
  Gate(FrontServer& owner, const FrontLimits& limits) : owner_(owner), limits_(limits) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
    thread_ = std::thread([this] { loop(); });
  }
  ~Gate() {
    stop();
    ::close(wake_);
    ::close(epoll_);
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopped_) return;
      stopped_ = true;
    }
    wake();
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& in : incoming_) close_fd(in.fd);
    incoming_.clear();
  }

  // A new connection from the accept loop.
  void admit(int fd) {
    open_.fetch_add(1);
    if (open_.load() > limits_.max_connections) {
      rejected_busy_.fetch_add(1);
      send_canned(fd, 503, "unavailable", "too many connections; retry later", 1);
      close_fd(fd);
      return;
    }
    const int flags = ::fcntl(fd, F_GETFL);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    hand_in({fd, {}, State::kIdle});
  }
  // A connection whose request was served and that may carry another.
  void rejoin(int fd, std::string leftover) { hand_in({fd, std::move(leftover), State::kIdle}); }
  // A connection whose body was left unread: answer already sent, read and drop the rest for a
  // moment so the client sees the answer rather than a reset, then close.
  void linger(int fd) {
    ::shutdown(fd, SHUT_WR);
    hand_in({fd, {}, State::kLinger});
  }
  void refuse(int fd, int status, const std::string& code, const std::string& message,
              int retry_after) {
    send_canned(fd, status, code, message, retry_after);
    linger(fd);
  }
  void close_fd(int fd) {
    ::close(fd);
    open_.fetch_sub(1);
  }

  size_t open() const { return open_.load(); }
  size_t rejected_busy() const { return rejected_busy_.load(); }
  size_t head_timeouts() const { return head_timeouts_.load(); }
  size_t head_too_large() const { return head_too_large_.load(); }
  void count_busy() { rejected_busy_.fetch_add(1); }

 private:
  enum class State { kIdle, kHead, kLinger };
  struct Conn {
    int fd;
    std::string buf;
    State state;
    SteadyClock::time_point deadline{};
    size_t dropped = 0;
  };

  void hand_in(Conn c) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!stopped_) {
        incoming_.push_back(std::move(c));
        c.fd = -1;
      }
    }
    if (c.fd >= 0) close_fd(c.fd);
    wake();
  }
  void wake() {
    const uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof one);
  }

  void loop() {
    std::vector<epoll_event> events(128);
    auto next_sweep = SteadyClock::now();
    for (;;) {
      const int n = ::epoll_wait(epoll_, events.data(), int(events.size()), 100);
      std::vector<Conn> arrived;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopped_) break;
        arrived.swap(incoming_);
      }
      for (auto& c : arrived) add(std::move(c));
      for (int i = 0; i < n; ++i) {
        const int fd = events[size_t(i)].data.fd;
        if (fd == wake_) {
          uint64_t v;
          while (::read(wake_, &v, sizeof v) > 0) {
          }
          continue;
        }
        const auto it = conns_.find(fd);
        if (it != conns_.end()) on_readable(it->second);
      }
      if (SteadyClock::now() >= next_sweep) {
        sweep();
        next_sweep = SteadyClock::now() + std::chrono::milliseconds(100);
      }
    }
    for (auto& [fd, c] : conns_) close_fd(fd);
    conns_.clear();
  }

  void add(Conn c) {
    c.deadline = after(c.state == State::kLinger ? 2.0 : limits_.idle_timeout_seconds);
    if (!c.buf.empty() && c.state == State::kIdle) {
      c.state = State::kHead;
      c.deadline = after(limits_.head_timeout_seconds);
    }
    const int fd = c.fd;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close_fd(fd);
      return;
    }
    auto& stored = conns_[fd] = std::move(c);
    if (stored.state == State::kHead) try_dispatch(stored);  // a pipelined request
  }

  void drop(int fd) {
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
    conns_.erase(fd);
  }
  void drop_and_close(int fd) {
    drop(fd);
    close_fd(fd);
  }

  void on_readable(Conn& c) {
    char buf[8192];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return drop_and_close(c.fd);
      if (n < 0) return;
      if (c.state == State::kLinger) {
        c.dropped += size_t(n);
        if (c.dropped > (size_t(4) << 20)) return drop_and_close(c.fd);
        continue;
      }
      if (c.state == State::kIdle) {
        c.state = State::kHead;
        c.deadline = after(limits_.head_timeout_seconds);
      }
      c.buf.append(buf, size_t(n));
      if (try_dispatch(c)) return;  // `c` is gone
      if (c.buf.size() > limits_.max_head_bytes) {
        head_too_large_.fetch_add(1);
        const int fd = c.fd;
        drop(fd);
        send_canned(fd, 431, "invalid_input", "request head larger than the server accepts", 0);
        ::shutdown(fd, SHUT_WR);
        close_fd(fd);
        return;
      }
    }
  }

  // Hands a connection whose head is complete to its lane; true if it left the gate.
  bool try_dispatch(Conn& c) {
    const size_t end = c.buf.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    const size_t line_end = c.buf.find("\r\n");
    const std::string_view line(c.buf.data(), line_end);
    const size_t sp1 = line.find(' ');
    const std::string_view method = line.substr(0, sp1);
    std::string_view target =
        sp1 == std::string_view::npos ? std::string_view{} : line.substr(sp1 + 1);
    target = target.substr(0, target.find(' '));
    const std::string_view path = target.substr(0, target.find('?'));
    const Lane lane = owner_.classify_(method, path);
    const int fd = c.fd;
    std::string head = std::move(c.buf);
    drop(fd);
    owner_.dispatch(lane, fd, std::move(head));
    return true;
  }

  void sweep() {
    const auto now = SteadyClock::now();
    std::vector<int> expired;
    for (auto& [fd, c] : conns_)
      if (now >= c.deadline) expired.push_back(fd);
    for (int fd : expired) {
      const Conn& c = conns_.at(fd);
      if (c.state == State::kHead) {
        head_timeouts_.fetch_add(1);
        send_canned(fd, 408, "invalid_input", "request head not received in time", 0);
      }
      drop_and_close(fd);
    }
  }

  FrontServer& owner_;
  const FrontLimits& limits_;
  int epoll_ = -1, wake_ = -1;
  std::thread thread_;
  std::mutex mutex_;
  bool stopped_ = false;
  std::vector<Conn> incoming_;
  std::unordered_map<int, Conn> conns_;  // only the gate thread touches it
  std::atomic<size_t> open_{0};
  std::atomic<size_t> rejected_busy_{0}, head_timeouts_{0}, head_too_large_{0};
};

// ---------------------------------------------------------------------------------------------
// Lanes: a fixed thread pool per route class with a bounded wait list.

class Lanes {
 public:
  Lanes(FrontServer& owner, const FrontLimits& limits) : owner_(owner) {
    for (int l = 0; l < kLaneCount; ++l) {
      auto& lane = lanes_[l];
      lane.backlog = size_t(std::max(0, limits.backlog[l]));
      for (int i = 0; i < std::max(1, limits.threads[l]); ++i)
        lane.threads.emplace_back([this, l] { run(l); });
      lane.idle = lane.threads.size();
    }
  }
  ~Lanes() { stop(); }

  bool submit(Lane which, int fd, std::string head) {
    auto& lane = lanes_[int(which)];
    {
      std::lock_guard<std::mutex> lock(lane.mutex);
      if (lane.stopped || lane.tasks.size() >= lane.idle + lane.backlog) return false;
      lane.tasks.push_back({fd, std::move(head)});
    }
    lane.wake.notify_one();
    return true;
  }

  // Threads finish the request they serve (bounded by the stream's stop deadline); queued
  // requests are closed unserved.
  std::vector<int> stop() {
    std::vector<int> unserved;
    for (auto& lane : lanes_) {
      std::lock_guard<std::mutex> lock(lane.mutex);
      lane.stopped = true;
      for (auto& t : lane.tasks) unserved.push_back(t.fd);
      lane.tasks.clear();
      lane.wake.notify_all();
    }
    for (auto& lane : lanes_)
      for (auto& t : lane.threads)
        if (t.joinable()) t.join();
    return unserved;
  }

 private:
  struct Task {
    int fd;
    std::string head;
  };
  struct LaneState {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<Task> tasks;
    std::vector<std::thread> threads;
    size_t idle = 0, backlog = 0;
    bool stopped = false;
  };

  void run(int l) {
    auto& lane = lanes_[l];
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(lane.mutex);
        lane.wake.wait(lock, [&] { return lane.stopped || !lane.tasks.empty(); });
        if (lane.stopped) return;
        task = std::move(lane.tasks.front());
        lane.tasks.pop_front();
        --lane.idle;
      }
      owner_.serve(task.fd, std::move(task.head));
      std::lock_guard<std::mutex> lock(lane.mutex);
      ++lane.idle;
    }
  }

  FrontServer& owner_;
  LaneState lanes_[kLaneCount];
};

// ---------------------------------------------------------------------------------------------

namespace {

// httplib's accept loop hands each socket to its task queue; running the task inline makes
// process_and_close_socket (our gate admission) run on the accept thread, without blocking.
class InlineTaskQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

}  // namespace

FrontServer::FrontServer(FrontLimits limits, Classifier classify)
    : limits_(limits), classify_(std::move(classify)) {
  new_task_queue = [] { return new InlineTaskQueue; };
  gate_ = std::make_unique<Gate>(*this, limits_);
  lanes_ = std::make_unique<Lanes>(*this, limits_);
}

FrontServer::~FrontServer() { shut_down(std::chrono::seconds(0)); }

bool FrontServer::process_and_close_socket(socket_t sock) {
  if (shutting_down_) {
    ::close(sock);
    return false;
  }
  gate_->admit(sock);
  return true;
}

void FrontServer::dispatch(Lane lane, int fd, std::string head) {
  if (!lanes_->submit(lane, fd, std::move(head))) {
    gate_->count_busy();
    // Streams are a capped resource (503, as for any unavailable service); everything else is
    // a client burst beyond what the server queues, answered like a full job queue.
    if (lane == Lane::kStream)
      gate_->refuse(fd, 503, "unavailable", "too many event streams open; retry later", 2);
    else
      gate_->refuse(fd, 429, "queue_full", "too many requests in progress; retry later", 1);
  }
}

void FrontServer::serve(int fd, std::string head) {
  GateStream stream(limits_, stop_deadline_ns_, fd, std::move(head));
  t_stream = &stream;
  bool connection_closed = false;
  const bool last = shutting_down_.load();
  bool ok = false;
  try {
    // httplib applies a Range header to every answer, error bodies included; handlers that
    // serve ranges (downloads) read the header themselves.
    ok = process_request(stream, last, connection_closed,
                         [](httplib::Request& req) { req.ranges.clear(); });
  } catch (...) {
    ok = false;
  }
  t_stream = nullptr;
  if (ok && stream.must_close() && !shutting_down_) return gate_->linger(fd);
  if (!ok || connection_closed || last || stream.must_close() || shutting_down_)
    return gate_->close_fd(fd);
  gate_->rejoin(fd, stream.leftover());
}

void FrontServer::shut_down(std::chrono::duration<double> grace) {
  if (shutting_down_.exchange(true)) return;
  stop_deadline_ns_ =
      now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(grace).count() + 1;
  stop();  // httplib's accept loop
  gate_->stop();
  for (int fd : lanes_->stop()) gate_->close_fd(fd);
}

bool FrontServer::client_gone() { return t_stream && t_stream->peer_gone(); }

void FrontServer::close_after_response() {
  if (t_stream) t_stream->set_must_close();
}

size_t FrontServer::body_bytes_read() { return t_stream ? t_stream->body_bytes() : 0; }

FrontServer::Stats FrontServer::stats() const {
  Stats s;
  s.connections = gate_->open();
  s.rejected_busy = gate_->rejected_busy();
  s.head_timeouts = gate_->head_timeouts();
  s.head_too_large = gate_->head_too_large();
  return s;
}

}  // namespace foley_server
