#include "redis_queue.h"

#include <unistd.h>

#include <cstdlib>
#include <map>

namespace foley_server {

namespace {

const std::string kQueue = "foley:q";
const std::string kDone = "foley:done";
const std::string kStats = "foley:stats";
std::string job_key(const std::string& id) {
  return "foley:job:" + id;
}
std::string events_key(const std::string& id) {
  return "foley:ev:" + id;
}
std::string worker_key(const std::string& name) {
  return "foley:worker:" + name;
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

double now_seconds() {
  return to_epoch_seconds(Clock::now());
}

// KEYS: job, events, queue. ARGV: request, created_at, id, queued event data, max entries.
const char* const kSubmit = R"lua(
if tonumber(ARGV[5]) > 0 and redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[5]) then return 0 end
local entry = redis.call('XADD', KEYS[3], '*', 'id', ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'queued', 'request', ARGV[1], 'created_at', ARGV[2],
           'attempts', '0', 'entry', entry, 'fraction', '0')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '64', '*', 'name', 'queued', 'data', ARGV[4])
return 1
)lua";

// KEYS: job, events, done, queue. ARGV: reason, now, id, cancelled event data, error JSON.
const char* const kCancel = R"lua(
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return -1 end
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[2], 'error', ARGV[5],
             'cancel', '1', 'cancel_reason', ARGV[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '64', '*', 'name', 'cancelled', 'data', ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
  local entry = redis.call('HGET', KEYS[1], 'entry')
  if entry then redis.call('XDEL', KEYS[4], entry) end
  return 1
end
if st == 'running' then
  if redis.call('HGET', KEYS[1], 'cancel') ~= '1' then
    redis.call('HSET', KEYS[1], 'cancel', '1', 'cancel_reason', ARGV[1])
  end
  return 2
end
return 0
)lua";

// KEYS: job, events. ARGV: worker, now, running event data.
const char* const kStart = R"lua(
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return 0 end
if st ~= 'queued' and st ~= 'running' then return 0 end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[1], 'started_at', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '64', '*', 'name', 'running', 'data', ARGV[3])
return attempts
)lua";

// KEYS: job, events. ARGV: worker, progress JSON, fraction, progress event data.
const char* const kProgress = R"lua(
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[2], 'fraction', ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '64', '*', 'name', 'progress', 'data', ARGV[4])
return 1
)lua";

// KEYS: job, events, done. ARGV: worker, state, finished_at, result, error, event name, event
// data, id.
const char* const kFinish = R"lua(
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if ARGV[2] == 'succeeded' and redis.call('HGET', KEYS[1], 'cancel') == '1' then return 2 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished_at', ARGV[3], 'result', ARGV[4],
           'error', ARGV[5], 'fraction', ARGV[2] == 'succeeded' and '1' or
           (redis.call('HGET', KEYS[1], 'fraction') or '0'))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '64', '*', 'name', ARGV[6], 'data', ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[8])
return 1
)lua";

// KEYS: job, events, done. ARGV: id. Returns the stored request and result to find the files.
const char* const kForget = R"lua(
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'succeeded' and st ~= 'failed' and st ~= 'cancelled' then return false end
local files = redis.call('HMGET', KEYS[1], 'request', 'result')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return files
)lua";

std::string eval(RedisClient& c, const char* script, const std::vector<std::string>& keys,
                 const std::vector<std::string>& args, long long* integer = nullptr) {
  std::vector<std::string> argv = {"EVAL", script, std::to_string(keys.size())};
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  const RedisReply r = c.command(argv);
  if (integer) *integer = r.is_integer() ? r.integer : 0;
  return r.is_string() ? r.str : "";
}

JobState parse_state(const std::string& s) {
  if (s == "running") return JobState::kRunning;
  if (s == "succeeded") return JobState::kSucceeded;
  if (s == "failed") return JobState::kFailed;
  if (s == "cancelled") return JobState::kCancelled;
  return JobState::kQueued;
}

nlohmann::json parse_json(const std::string& s) {
  return s.empty() ? nlohmann::json() : nlohmann::json::parse(s, nullptr, false);
}

std::vector<RedisEvent> parse_entries(const RedisReply& entries) {
  std::vector<RedisEvent> out;
  for (const auto& e : entries.elements) {
    if (!e.is_array() || e.size() < 2) continue;
    RedisEvent ev;
    ev.stream_id = e.at(0).as_string();
    const RedisReply& fields = e.at(1);
    for (size_t i = 0; i + 1 < fields.size(); i += 2) {
      const std::string& k = fields.at(i).as_string();
      if (k == "name") ev.name = fields.at(i + 1).as_string();
      if (k == "data" || k == "id") {
        ev.data = k == "data" ? parse_json(fields.at(i + 1).as_string())
                              : nlohmann::json(fields.at(i + 1).as_string());
      }
    }
    out.push_back(std::move(ev));
  }
  return out;
}

// The ms part of a stream id ("1700000000000-3").
double stream_id_seconds(const std::string& id) {
  return std::atof(id.c_str()) / 1000.0;
}

}  // namespace

RedisPool::Lease RedisPool::lease() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return Lease(*this, std::move(c));
    }
  }
  return Lease(*this, std::make_unique<RedisClient>(url_));
}

void RedisPool::give_back(std::unique_ptr<RedisClient> c) {
  if (!c) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (idle_.size() < 16) idle_.push_back(std::move(c));
}

RedisQueue::RedisQueue(RedisUrl url) : pool_(std::move(url)) {}

void RedisQueue::ensure_group() {
  auto c = pool_.lease();
  try {
    c->command({"XGROUP", "CREATE", kQueue, kGroup, "0", "MKSTREAM"});
  } catch (const RedisError& e) {
    if (e.connection() || std::string(e.what()).find("BUSYGROUP") == std::string::npos) throw;
  }
}

bool RedisQueue::submit(const Job& job, size_t max_queued) {
  auto c = pool_.lease();
  nlohmann::json queued;
  std::string request;
  {
    std::lock_guard<std::mutex> lock(const_cast<Job&>(job).mutex);
    request = request_to_json(job.request).dump();
    queued = {{"id", job.id}};
  }
  long long ok = 0;
  eval(*c, kSubmit, {job_key(job.id), events_key(job.id), kQueue},
       {request, num(to_epoch_seconds(job.created_at)), job.id, queued.dump(),
        std::to_string(max_queued)},
       &ok);
  return ok == 1;
}

bool RedisQueue::load(const std::string& id, Job& job) {
  auto c = pool_.lease();
  const RedisReply r = c->command({"HGETALL", job_key(id)});
  if (!r.is_array() || r.size() == 0) return false;
  std::map<std::string, std::string> f;
  for (size_t i = 0; i + 1 < r.size(); i += 2) f[r.at(i).as_string()] = r.at(i + 1).as_string();
  auto get = [&](const char* k) {
    const auto it = f.find(k);
    return it == f.end() ? std::string() : it->second;
  };
  job.id = id;
  try {
    job.request = request_from_json(parse_json(get("request")));
  } catch (const std::exception&) {
    return false;
  }
  job.state = parse_state(get("state"));
  job.created_at = from_epoch_seconds(std::atof(get("created_at").c_str()));
  if (!get("started_at").empty())
    job.started_at = from_epoch_seconds(std::atof(get("started_at").c_str()));
  if (!get("finished_at").empty())
    job.finished_at = from_epoch_seconds(std::atof(get("finished_at").c_str()));
  const nlohmann::json progress = parse_json(get("progress"));
  if (progress.is_object()) {
    job.progress.stage = progress.value("stage", "");
    job.progress.step = progress.value("step", 0);
    job.progress.total_steps = progress.value("total_steps", 0);
    job.progress.window = progress.value("window", 0);
    job.progress.total_windows = progress.value("total_windows", 1);
  }
  job.fraction = std::atof(get("fraction").c_str());
  const nlohmann::json result = parse_json(get("result"));
  if (result.is_object()) apply_result_locked(job, result);
  const nlohmann::json error = parse_json(get("error"));
  if (error.is_object()) {
    job.error_status = error.value("status", 500);
    job.error_code = error.value("code", "");
    job.error_message = error.value("message", "");
  }
  job.cancel_reason = get("cancel_reason");
  return true;
}

std::vector<RedisEvent> RedisQueue::events(const std::string& id, const std::string& after) {
  auto c = pool_.lease();
  return parse_entries(
      c->command({"XRANGE", events_key(id), after == "0" ? "-" : "(" + after, "+"}));
}

std::string RedisQueue::last_event_id(const std::string& id) {
  auto c = pool_.lease();
  const RedisReply r = c->command({"XREVRANGE", events_key(id), "+", "-", "COUNT", "1"});
  if (!r.is_array() || r.size() == 0) return "0";
  return r.at(0).at(0).as_string();
}

int RedisQueue::cancel(const std::string& id, const std::string& reason) {
  auto c = pool_.lease();
  const nlohmann::json error = {{"status", 409}, {"code", "cancelled"}, {"message", reason}};
  const nlohmann::json event = {{"id", id},
                                {"error", {{"code", "cancelled"}, {"message", reason}}}};
  long long r = 0;
  eval(*c, kCancel, {job_key(id), events_key(id), kDone, kQueue},
       {reason, num(now_seconds()), id, event.dump(), error.dump()}, &r);
  return int(r);
}

std::optional<std::vector<std::string>> RedisQueue::forget(const std::string& id) {
  auto c = pool_.lease();
  std::vector<std::string> argv = {"EVAL", kForget, "3", job_key(id), events_key(id), kDone, id};
  const RedisReply r = c->command(argv);
  if (!r.is_array()) return std::nullopt;
  std::vector<std::string> files;
  if (r.size() >= 2) {
    const nlohmann::json request = r.at(0).is_string() ? parse_json(r.at(0).str) : nullptr;
    const nlohmann::json result = r.at(1).is_string() ? parse_json(r.at(1).str) : nullptr;
    if (request.is_object() && request.value("owns_video", false))
      files.push_back(request.value("video_path", ""));
    if (result.is_object()) {
      files.push_back(result.value("audio_path", ""));
      files.push_back(result.value("video_path", ""));
    }
  }
  return files;
}

std::vector<std::string> RedisQueue::expired(double before, size_t limit) {
  auto c = pool_.lease();
  const RedisReply r = c->command(
      {"ZRANGEBYSCORE", kDone, "-inf", num(before), "LIMIT", "0", std::to_string(limit)});
  std::vector<std::string> ids;
  for (const auto& e : r.elements) ids.push_back(e.as_string());
  return ids;
}

RedisQueue::Stats RedisQueue::stats() {
  auto c = pool_.lease();
  Stats s;
  const RedisReply groups = c->command({"XINFO", "GROUPS", kQueue});
  std::string last_delivered = "0-0";
  for (const auto& g : groups.elements) {
    for (size_t i = 0; i + 1 < g.size(); i += 2) {
      const std::string& k = g.at(i).as_string();
      if (k == "pending") s.pending = size_t(g.at(i + 1).as_integer());
      if (k == "last-delivered-id") last_delivered = g.at(i + 1).as_string();
    }
  }
  const long long length = c->command({"XLEN", kQueue}).as_integer();
  // Entries after the last delivered one have not reached a worker yet.
  const RedisReply waiting =
      c->command({"XRANGE", kQueue, "(" + last_delivered, "+", "COUNT", "1"});
  if (waiting.is_array() && waiting.size() > 0) {
    s.oldest_waiting_seconds =
        std::max(0.0, now_seconds() - stream_id_seconds(waiting.at(0).at(0).as_string()));
    s.waiting = size_t(std::max<long long>(0, length - static_cast<long long>(s.pending)));
  }
  const RedisReply reclaimed = c->command({"HGET", kStats, "reclaimed"});
  if (reclaimed.is_string()) s.reclaimed = std::atoll(reclaimed.str.c_str());
  std::string cursor = "0";
  do {
    const RedisReply scan = c->command({"SCAN", cursor, "MATCH", "foley:worker:*", "COUNT", "100"});
    cursor = scan.at(0).as_string();
    for (const auto& key : scan.at(1).elements) {
      const RedisReply busy = c->command({"HGET", key.as_string(), "busy"});
      if (busy.is_string() && busy.str == "1")
        ++s.workers_busy;
      else if (busy.is_string())
        ++s.workers_idle;
    }
  } while (cursor != "0");
  return s;
}

std::optional<QueueClaim> RedisQueue::claim(RedisClient& c, const std::string& worker,
                                            int64_t visibility_ms, int block_ms) {
  // First the entries of workers that stopped heartbeating.
  const RedisReply auto_claimed = c.command(
      {"XAUTOCLAIM", kQueue, kGroup, worker, std::to_string(visibility_ms), "0-0", "COUNT", "1"});
  if (auto_claimed.is_array() && auto_claimed.size() >= 2) {
    if (auto_claimed.size() >= 3)
      for (const auto& gone : auto_claimed.at(2).elements)  // deleted while pending
        c.command({"XACK", kQueue, kGroup, gone.as_string()});
    const auto entries = parse_entries(auto_claimed.at(1));
    if (!entries.empty()) {
      c.command({"HINCRBY", kStats, "reclaimed", "1"});
      return QueueClaim{entries[0].stream_id, entries[0].data.get<std::string>(), true};
    }
  }
  // (BLOCK 0 would wait forever: a non-blocking read has no BLOCK.)
  std::vector<std::string> read = {"XREADGROUP", "GROUP", kGroup, worker, "COUNT", "1"};
  if (block_ms > 0) read.insert(read.end(), {"BLOCK", std::to_string(block_ms)});
  read.insert(read.end(), {"STREAMS", kQueue, ">"});
  c.set_timeout(block_ms / 1000.0 + 5.0);
  const RedisReply r = c.command(read);
  c.set_timeout(5.0);
  if (!r.is_array() || r.size() == 0) return std::nullopt;
  const auto entries = parse_entries(r.at(0).at(1));
  if (entries.empty() || !entries[0].data.is_string()) return std::nullopt;
  return QueueClaim{entries[0].stream_id, entries[0].data.get<std::string>(), false};
}

int64_t RedisQueue::start(RedisClient& c, const QueueClaim& claim, const std::string& worker) {
  long long attempts = 0;
  eval(c, kStart, {job_key(claim.id), events_key(claim.id)},
       {worker, num(now_seconds()), nlohmann::json({{"id", claim.id}}).dump()}, &attempts);
  return attempts;
}

void RedisQueue::progress(RedisClient& c, const Job& job, const std::string& worker) {
  std::string progress, fraction, event;
  {
    std::lock_guard<std::mutex> lock(const_cast<Job&>(job).mutex);
    const nlohmann::json p = progress_json_locked(job);
    progress = p.dump();
    fraction = num(job.fraction);
    event = p.dump();
  }
  eval(c, kProgress, {job_key(job.id), events_key(job.id)}, {worker, progress, fraction, event});
}

bool RedisQueue::heartbeat(RedisClient& c, const QueueClaim& claim, const std::string& worker,
                           bool busy, double ttl_seconds) {
  std::vector<std::vector<std::string>> cmds = {
      {"XCLAIM", kQueue, kGroup, worker, "0", claim.entry, "JUSTID"},
      {"HGET", job_key(claim.id), "cancel"},
      {"HSET", worker_key(worker), "busy", busy ? "1" : "0", "job", claim.id, "seen",
       num(now_seconds())},
      {"EXPIRE", worker_key(worker), std::to_string(int(ttl_seconds) + 1)}};
  const auto replies = c.pipeline(cmds);
  return replies.size() > 1 && replies[1].is_string() && replies[1].str == "1";
}

int RedisQueue::finish(RedisClient& c, const Job& job, const std::string& worker) {
  std::string state, result, error, event_name, event;
  double finished_at;
  {
    std::lock_guard<std::mutex> lock(const_cast<Job&>(job).mutex);
    state = state_name(job.state);
    finished_at = to_epoch_seconds(job.finished_at);
    if (job.state == JobState::kSucceeded) result = result_json_locked(job).dump();
    else error = error_record_locked(job).dump();
    auto [name, data] = terminal_event_locked(job);
    event_name = name;
    event = data.dump();
  }
  long long r = 0;
  eval(c, kFinish, {job_key(job.id), events_key(job.id), kDone},
       {worker, state, num(finished_at), result, error, event_name, event, job.id}, &r);
  return int(r);
}

void RedisQueue::acknowledge(RedisClient& c, const QueueClaim& claim) {
  c.pipeline({{"XACK", kQueue, kGroup, claim.entry}, {"XDEL", kQueue, claim.entry}});
}

void RedisQueue::idle(RedisClient& c, const std::string& worker, double ttl_seconds) {
  c.pipeline({{"HSET", worker_key(worker), "busy", "0", "job", "", "seen", num(now_seconds())},
              {"EXPIRE", worker_key(worker), std::to_string(int(ttl_seconds) + 1)}});
}

}  // namespace foley_server
