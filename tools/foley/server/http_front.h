// Connection handling in front of httplib. httplib alone gives every connection a thread from the
// moment it is accepted, so 64 clients sending one header byte a second (or idling between
// keep-alive requests) hold every thread and /health stops answering. Here one epoll thread (the
// gate) holds each connection while its request head arrives, bounded in time and size; only a
// complete head is handed to a thread, and to one of several lanes chosen by route, so health
// checks never queue behind uploads or event streams. A thread serves one request and gives the
// connection back to the gate for the next one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <httplib.h>

namespace foley_server {

enum class Lane { kHealth, kControl, kWork, kStream };
inline constexpr int kLaneCount = 4;

struct FrontLimits {
  // Threads and extra waiting requests per lane; a request beyond both gets 429 + Retry-After
  // (503 on the stream lane, whose threads are the cap on open event streams).
  int threads[kLaneCount] = {2, 4, 16, 16};
  int backlog[kLaneCount] = {256, 256, 64, 0};
  double head_timeout_seconds = 10;  // from the first byte of a request to the end of its head
  double idle_timeout_seconds = 5;   // a kept-alive connection waiting for its next request
  double io_timeout_seconds = 60;    // one read or write making no progress
  size_t max_head_bytes = 16 << 10;  // request line + headers (431 above)
  size_t max_connections = 4096;     // held by the gate or served (503 above)
  // The request body (on top of the head) that the stream delivers at most; past it the read fails.
  size_t max_body_bytes = size_t(256) << 20;
  // A body arriving slower than this on average, after the first io_timeout, is cut off.
  double min_body_bytes_per_second = 16 << 10;
};

class Gate;
class Lanes;
class GateStream;

class FrontServer : public httplib::Server {
 public:
  using Classifier = std::function<Lane(std::string_view method, std::string_view path)>;

  FrontServer(FrontLimits limits, Classifier classify);
  ~FrontServer() override;

  // Stops accepting, closes idle connections, and gives requests in progress until `grace`
  // to end (their reads and writes fail after it). Idempotent.
  void shut_down(std::chrono::duration<double> grace);

  // For handlers, about the request the calling thread serves:
  // the client closed its side (it will never read an answer).
  static bool client_gone();
  // The body was not read (or not completely): the connection cannot carry another request.
  static void close_after_response();
  // Bytes of the request body the stream has delivered so far.
  static size_t body_bytes_read();

  struct Stats {
    size_t connections = 0;  // open now
    size_t rejected_busy = 0, head_timeouts = 0, head_too_large = 0;
  };
  Stats stats() const;

 private:
  bool process_and_close_socket(socket_t sock) override;  // called by httplib's accept loop
  void dispatch(Lane lane, int fd, std::string head);  // from the gate, head complete
  void serve(int fd, std::string head);                // on a lane thread

  FrontLimits limits_;
  Classifier classify_;
  std::unique_ptr<Gate> gate_;
  std::unique_ptr<Lanes> lanes_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<int64_t> stop_deadline_ns_{0};  // 0: none; else reads/writes fail after it
  friend class Gate;
  friend class Lanes;
};

}  // namespace foley_server
