// GET /v1/generations/{id}/events: the job's events as Server-Sent Events. A client first gets
// the current state (so one joining late loses nothing that matters), then every later event,
// and the stream ends after the terminal one (done, failed or cancelled). A comment line every
// 10 s keeps proxies from closing an idle stream.
#include <chrono>

#include "app.h"

namespace foley_server {

namespace {

std::string sse_event(const std::string& name, const nlohmann::json& data) {
  return "event: " + name + "\ndata: " + data.dump() + "\n\n";
}

bool is_terminal_event(const std::string& name) {
  return name == "done" || name == "failed" || name == "cancelled";
}

struct Cursor {
  bool started = false;
  uint64_t next = 0;  // sequence number of the next event to send
  std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
};

}  // namespace

void App::get_events(const httplib::Request& req, httplib::Response& res) {
  auto job = job_or_404(req, res);
  if (!job) return;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto cursor = std::make_shared<Cursor>();
  res.set_chunked_content_provider(
      "text/event-stream", [this, job, cursor](size_t, httplib::DataSink& sink) {
        using namespace std::chrono;
        std::string out;
        bool end = false;
        {
          std::unique_lock<std::mutex> lock(job->mutex);
          if (!cursor->started) {
            cursor->started = true;
            cursor->next = job->next_seq;
            if (is_terminal(job->state)) {
              const JobEvent& last = job->events.back();  // the terminal event
              out = sse_event(last.name, last.data);
              end = true;
            } else {
              out = sse_event(state_name(job->state), {{"id", job->id}, {"state", state_name(job->state)}});
              if (job->state == JobState::kRunning && !job->progress.stage.empty())
                out += sse_event("progress", progress_json_locked(*job));
            }
          } else {
            // Short waits so a stopping server is noticed quickly.
            job->changed.wait_for(lock, seconds(1), [&] {
              return job->next_seq > cursor->next || stopping_;
            });
            for (const JobEvent& e : job->events) {
              if (e.seq < cursor->next) continue;
              out += sse_event(e.name, e.data);
              cursor->next = e.seq + 1;
              end = is_terminal_event(e.name);
              if (end) break;
            }
          }
        }
        if (stopping_ && out.empty()) return false;
        if (out.empty() && steady_clock::now() - cursor->last_write >= seconds(10))
          out = ": keep-alive\n\n";
        if (!out.empty()) {
          if (!sink.write(out.data(), out.size())) return false;
          cursor->last_write = steady_clock::now();
        }
        if (end) sink.done();
        return true;
      });
}

}  // namespace foley_server
