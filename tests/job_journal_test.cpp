// The server's durable job journal (tools/foley/server/job_journal.h, issue 16): every field
// round-trips, acceptance order holds, a reopen keeps everything, a process killed mid-way (its
// own SIGKILL, _exit, or a SIGKILL from outside at an unknown point) leaves exactly the calls that
// returned, concurrent accepts lose nothing, and a damaged file, a newer schema, a second opener,
// a read-only mount and a full disk each give the error kind the server maps to a status. The
// cost of one accept (a commit with fsync) is printed, not asserted.
#ifdef FOLEY_HAVE_HTTP

#include "job_journal.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace foley::test {
namespace {

using foley_server::JobJournal;
using foley_server::JournalError;
using foley_server::JournalErrorKind;
using nlohmann::json;
namespace fs = std::filesystem;

// Runs `fn`, which must throw JournalError; returns it (a failure is recorded otherwise).
template <typename Fn>
std::optional<JournalError> journal_error(Fn&& fn) {
  try {
    fn();
  } catch (const JournalError& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than JournalError: " << e.what();
    return std::nullopt;
  }
  ADD_FAILURE() << "did not throw";
  return std::nullopt;
}

json sample_request(int i) {
  return json{{"prompt", "rain on a tin roof, take " + std::to_string(i) + " \xc3\xa9\xe2\x9c\x93"},
              {"negative_prompt", ""},
              {"steps", 25 + i},
              {"guidance", 4.5},
              {"seed", uint64_t{0xfedcba9876543210ull} + i},
              {"video_path", "/data/uploads/" + std::to_string(i) + ".mp4"},
              {"owns_video", true},
              {"format", "wav"},
              {"sample_format", "s16"},
              {"mux", i % 2 == 0}};
}

std::string job_id(int i) {
  char buf[40];
  // Not in sorted order, so acceptance order is not the id order.
  std::snprintf(buf, sizeof buf, "%08x%024d", static_cast<unsigned>(i * 2654435761u), i);
  return buf;
}

// ---- A model of what the journal should hold after the first k calls of a scripted run. ----

struct Op {
  enum Kind { kAccept, kRunning, kFinished, kRemove } kind;
  int job;
};

// 50 jobs: each accepted; every other one started; every fourth finished (alternately succeeded
// and failed); every eighth of those later removed. Interleaved so a cut can land anywhere.
std::vector<Op> scripted_ops() {
  std::vector<Op> ops;
  for (int i = 0; i < 50; ++i) {
    ops.push_back({Op::kAccept, i});
    if (i >= 1 && (i - 1) % 2 == 0) ops.push_back({Op::kRunning, i - 1});
    if (i >= 2 && (i - 2) % 4 == 0) ops.push_back({Op::kFinished, i - 2});
    if (i >= 3 && (i - 3) % 8 == 0) ops.push_back({Op::kRemove, i - 3});
  }
  return ops;
}

json sample_result(int i) {
  return json{{"audio_path", "/data/results/" + job_id(i) + ".wav"},
              {"video_path", nullptr},
              {"bytes", 1234567 + i},
              {"audio_seconds", 8.0 + i / 16.0},
              {"clipped_samples", i},
              {"timings", json::array({{{"stage", "dit"}, {"seconds", 1.25}}})}};
}

void apply(JobJournal& journal, const Op& op) {
  const std::string id = job_id(op.job);
  switch (op.kind) {
    case Op::kAccept:
      journal.accept(id, sample_request(op.job), 1.7e9 + op.job);
      break;
    case Op::kRunning:
      ASSERT_TRUE(journal.running(id, 1.7e9 + op.job + 0.5));
      break;
    case Op::kFinished:
      if (op.job % 8 == 0)
        ASSERT_TRUE(journal.finished(id, "succeeded", 1.7e9 + op.job + 0.75,
                                     sample_result(op.job), nullptr));
      else
        ASSERT_TRUE(journal.finished(
            id, "failed", 1.7e9 + op.job + 0.75, nullptr,
            json{{"status", 500}, {"code", "generation_failed"}, {"message", "boom"}}));
      break;
    case Op::kRemove:
      ASSERT_TRUE(journal.remove(id));
      break;
  }
}

// The expected rows after the first `k` calls, in acceptance order.
std::vector<JobJournal::Row> expected_after(const std::vector<Op>& ops, size_t k) {
  std::vector<JobJournal::Row> rows;
  int64_t seq = 0;
  auto find = [&](int job) {
    return std::find_if(rows.begin(), rows.end(),
                        [&](const JobJournal::Row& r) { return r.id == job_id(job); });
  };
  for (size_t n = 0; n < k; ++n) {
    const Op& op = ops[n];
    if (op.kind == Op::kAccept) {
      JobJournal::Row row;
      row.id = job_id(op.job);
      row.state = "queued";
      row.request = sample_request(op.job);
      row.created_at = 1.7e9 + op.job;
      row.seq = ++seq;
      rows.push_back(row);
      continue;
    }
    auto it = find(op.job);
    if (op.kind == Op::kRunning) {
      it->state = "running";
      it->started_at = 1.7e9 + op.job + 0.5;
      it->attempts += 1;
    } else if (op.kind == Op::kFinished) {
      it->finished_at = 1.7e9 + op.job + 0.75;
      if (op.job % 8 == 0) {
        it->state = "succeeded";
        it->result = sample_result(op.job);
      } else {
        it->state = "failed";
        it->error = json{{"status", 500}, {"code", "generation_failed"}, {"message", "boom"}};
      }
    } else {
      rows.erase(it);
    }
  }
  return rows;
}

// Equal as stored, seq included (the model numbers accepts 1, 2, 3 ... like the journal).
::testing::AssertionResult same_rows(const std::vector<JobJournal::Row>& got,
                                     const std::vector<JobJournal::Row>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << got.size() << " rows, want " << want.size();
  for (size_t i = 0; i < got.size(); ++i) {
    const auto& g = got[i];
    const auto& w = want[i];
    if (g.id != w.id || g.state != w.state || g.request != w.request ||
        g.created_at != w.created_at || g.started_at != w.started_at ||
        g.finished_at != w.finished_at || g.result != w.result || g.error != w.error ||
        g.attempts != w.attempts || g.seq != w.seq)
      return ::testing::AssertionFailure()
             << "row " << i << " differs: got " << g.id << " " << g.state << " seq " << g.seq
             << " attempts " << g.attempts << ", want " << w.id << " " << w.state << " seq "
             << w.seq << " attempts " << w.attempts;
  }
  return ::testing::AssertionSuccess();
}

TEST(JobJournal, RoundTripsEveryField) {
  const std::string dir = temp_dir();
  auto journal = JobJournal::open(dir);
  EXPECT_EQ(journal->path(), dir + "/jobs.sqlite3");

  const json request = sample_request(7);
  const double created = 1722222222.123456, started = 1722222223.654321, done = 1722222230.5;
  journal->accept("a", request, created);
  EXPECT_TRUE(journal->running("a", started));
  EXPECT_TRUE(journal->finished("a", "succeeded", done, sample_result(7), nullptr));

  journal->accept("b", json{{"prompt", "x"}}, created + 1);
  EXPECT_TRUE(journal->finished("b", "cancelled", done + 1, nullptr,
                                json{{"status", 499}, {"code", "cancelled"},
                                     {"message", "cancelled by DELETE"}}));
  journal->accept("c", json::object(), created + 2);

  const auto rows = journal->load();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].id, "a");
  EXPECT_EQ(rows[0].state, "succeeded");
  EXPECT_EQ(rows[0].request, request);
  EXPECT_EQ(rows[0].request["seed"].get<uint64_t>(), uint64_t{0xfedcba9876543217ull});
  EXPECT_EQ(rows[0].created_at, created);  // REAL keeps a double exactly
  EXPECT_EQ(rows[0].started_at, started);
  EXPECT_EQ(rows[0].finished_at, done);
  EXPECT_EQ(rows[0].result, sample_result(7));
  EXPECT_TRUE(rows[0].error.is_null());
  EXPECT_EQ(rows[0].attempts, 1);
  EXPECT_EQ(rows[0].seq, 1);

  EXPECT_EQ(rows[1].state, "cancelled");
  EXPECT_FALSE(rows[1].started_at.has_value());
  EXPECT_TRUE(rows[1].result.is_null());
  EXPECT_EQ(rows[1].error["status"], 499);
  EXPECT_EQ(rows[1].attempts, 0);
  EXPECT_EQ(rows[1].seq, 2);

  EXPECT_EQ(rows[2].state, "queued");
  EXPECT_EQ(rows[2].request, json::object());
  EXPECT_FALSE(rows[2].finished_at.has_value());
  EXPECT_EQ(rows[2].seq, 3);

  // Unknown ids, a finished job asked to start again, a bad state, a duplicate id.
  EXPECT_FALSE(journal->running("nope", 1));
  EXPECT_FALSE(journal->finished("nope", "failed", 1, nullptr, nullptr));
  EXPECT_FALSE(journal->remove("nope"));
  EXPECT_FALSE(journal->running("a", started + 100));  // a cancel or finish is never undone
  EXPECT_THROW(journal->finished("c", "running", 1, nullptr, nullptr), std::invalid_argument);
  auto dup = journal_error([&] { journal->accept("a", json::object(), 0); });
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->kind(), JournalErrorKind::kOther);
  EXPECT_NE(std::string(dup->what()).find("already in the journal"), std::string::npos);
  // Invalid UTF-8 is refused rather than stored altered.
  EXPECT_THROW(journal->accept("d", json{{"prompt", "\xff\xfe"}}, 0), std::invalid_argument);

  EXPECT_TRUE(journal->remove("b"));
  const auto after = journal->load();
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].id, "a");
  EXPECT_EQ(after[1].id, "c");

  // The file (and its WAL, which SQLite gives the same mode) is private: ids guard results.
  struct stat st {};
  ASSERT_EQ(::stat((dir + "/jobs.sqlite3").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir + "/jobs.sqlite3-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Exclusive locking: no -shm file (the WAL index lives in the process).
  EXPECT_FALSE(fs::exists(dir + "/jobs.sqlite3-shm"));
}

TEST(JobJournal, KeepsAcceptanceOrderAndRequeuesInterrupted) {
  const std::string dir = temp_dir();
  auto journal = JobJournal::open(dir);
  for (int i = 0; i < 20; ++i) journal->accept(job_id(i), sample_request(i), 1.7e9 - i);
  journal->remove(job_id(19));  // the newest: the next seq must still come after the rest
  journal->remove(job_id(3));
  journal->accept(job_id(20), sample_request(20), 0);
  for (int i : {2, 5, 9}) ASSERT_TRUE(journal->running(job_id(i), 1.8e9));
  ASSERT_TRUE(journal->running(job_id(5), 1.8e9 + 1));  // started twice: attempts 2
  ASSERT_TRUE(journal->finished(job_id(9), "succeeded", 1.8e9 + 2, json::object(), nullptr));

  auto rows = journal->load();
  ASSERT_EQ(rows.size(), 19u);
  std::vector<std::string> ids;
  for (size_t i = 0; i < rows.size(); ++i) {
    ids.push_back(rows[i].id);
    if (i > 0) {
      EXPECT_LT(rows[i - 1].seq, rows[i].seq);
    }
  }
  std::vector<std::string> want;
  for (int i = 0; i <= 20; ++i)
    if (i != 3 && i != 19) want.push_back(job_id(i));
  EXPECT_EQ(ids, want);

  EXPECT_EQ(journal->requeue_interrupted(), 2u);  // 2 and 5; 9 finished
  EXPECT_EQ(journal->requeue_interrupted(), 0u);
  rows = journal->load();
  std::map<std::string, JobJournal::Row> by_id;
  for (auto& r : rows) by_id[r.id] = r;
  EXPECT_EQ(by_id[job_id(2)].state, "queued");
  EXPECT_FALSE(by_id[job_id(2)].started_at.has_value());
  EXPECT_EQ(by_id[job_id(2)].attempts, 1);
  EXPECT_EQ(by_id[job_id(5)].attempts, 2);
  EXPECT_EQ(by_id[job_id(9)].state, "succeeded");
  for (auto& r : rows) EXPECT_NE(r.state, "running");
}

TEST(JobJournal, ReopenKeepsEverything) {
  const std::string dir = temp_dir();
  const auto ops = scripted_ops();
  {
    auto journal = JobJournal::open(dir);
    for (const Op& op : ops) apply(*journal, op);
  }
  // Closed cleanly: the WAL was checkpointed into the main file.
  EXPECT_FALSE(fs::exists(dir + "/jobs.sqlite3-wal"));
  auto journal = JobJournal::open(dir);
  EXPECT_TRUE(same_rows(journal->load(), expected_after(ops, ops.size())));
  // Numbering goes on after the highest seq the file holds.
  journal->accept("later", json::object(), 0);
  EXPECT_EQ(journal->load().back().seq, expected_after(ops, ops.size()).back().seq + 1);
}

// How a child process ends its scripted run.
enum class Death { kSelfKillAfter, kExitAfter, kKilledFromOutside };

struct CrashOutcome {
  int status = 0;
  size_t signalled = 0;  // calls the child reported as returned
};

// Forks a child that opens the journal in `dir` and runs the script, writing one byte to a pipe
// after each call returns. kSelfKillAfter / kExitAfter: the child SIGKILLs itself / _exits
// (journal not closed, WAL not checkpointed) after `count` calls. kKilledFromOutside: the parent
// SIGKILLs it once `count` bytes have arrived, while it keeps going (so at an unknown point,
// possibly inside a commit).
CrashOutcome run_child(const std::string& dir, const std::vector<Op>& ops, Death death,
                       size_t count) {
  int fds[2];
  if (::pipe(fds) != 0) ADD_FAILURE() << "pipe: " << std::strerror(errno);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    try {
      auto journal = JobJournal::open(dir);
      for (size_t n = 0; n < ops.size(); ++n) {
        apply(*journal, ops[n]);
        if (::testing::Test::HasFailure()) ::_exit(3);
        const char byte = 'x';
        if (::write(fds[1], &byte, 1) != 1) ::_exit(4);
        if (n + 1 == count && death == Death::kSelfKillAfter) ::raise(SIGKILL);
        if (n + 1 == count && death == Death::kExitAfter) ::_exit(0);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      ::_exit(2);
    }
    ::_exit(5);  // ran off the end: the parent's kill came too late
  }
  ::close(fds[1]);
  CrashOutcome out;
  char buf[256];
  bool killed = false;
  for (;;) {
    const ssize_t got = ::read(fds[0], buf, death == Death::kKilledFromOutside ? 1 : sizeof buf);
    if (got <= 0) break;
    out.signalled += static_cast<size_t>(got);
    if (death == Death::kKilledFromOutside && !killed && out.signalled == count) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
  }
  ::close(fds[0]);
  ::waitpid(pid, &out.status, 0);
  return out;
}

TEST(JobJournal, SurvivesTheProcessKillingItselfMidWay) {
  const auto ops = scripted_ops();
  ASSERT_GT(ops.size(), 90u);
  const std::string dir = temp_dir();
  const size_t cut = 61;  // some queued, some running, some finished, some removed
  const CrashOutcome out = run_child(dir, ops, Death::kSelfKillAfter, cut);
  ASSERT_TRUE(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGKILL) << out.status;
  ASSERT_EQ(out.signalled, cut);
  EXPECT_TRUE(fs::exists(dir + "/jobs.sqlite3-wal"));  // died before any checkpoint on close

  auto journal = JobJournal::open(dir);
  const auto want = expected_after(ops, cut);
  EXPECT_TRUE(same_rows(journal->load(), want));
  size_t running = 0;
  for (const auto& r : want) running += r.state == "running";
  ASSERT_GT(running, 0u);
  EXPECT_EQ(journal->requeue_interrupted(), running);
}

TEST(JobJournal, SurvivesExitWithoutClose) {
  const auto ops = scripted_ops();
  const std::string dir = temp_dir();
  const CrashOutcome out = run_child(dir, ops, Death::kExitAfter, 37);
  ASSERT_TRUE(WIFEXITED(out.status) && WEXITSTATUS(out.status) == 0) << out.status;
  ASSERT_EQ(out.signalled, 37u);
  auto journal = JobJournal::open(dir);
  EXPECT_TRUE(same_rows(journal->load(), expected_after(ops, 37)));
}

TEST(JobJournal, SurvivesSigkillAtAnUnknownPoint) {
  const auto ops = scripted_ops();
  // A few rounds, each killed after a different number of calls; the child does not pause, so
  // the kill lands wherever it is, often inside the next commit. Every call that returned must
  // be there; the one in flight is all there or not at all.
  for (size_t cut : {1u, 17u, 40u, 66u}) {
    const std::string dir = temp_dir();
    const CrashOutcome out = run_child(dir, ops, Death::kKilledFromOutside, cut);
    ASSERT_TRUE(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGKILL)
        << "cut " << cut << ": status " << out.status;
    ASSERT_GE(out.signalled, cut);
    auto journal = JobJournal::open(dir);
    const auto rows = journal->load();
    const bool exact = same_rows(rows, expected_after(ops, out.signalled));
    const bool plus_one = out.signalled < ops.size() &&
                          same_rows(rows, expected_after(ops, out.signalled + 1));
    EXPECT_TRUE(exact || plus_one)
        << "cut " << cut << ": " << out.signalled << " calls returned; journal holds neither "
        << "their result nor the next call's: "
        << same_rows(rows, expected_after(ops, out.signalled)).message();
    std::printf("[ journal ] SIGKILL after %zu returned calls: journal holds %s\n",
                out.signalled, exact ? "exactly those" : "those + the one in flight");
  }
}

TEST(JobJournal, ConcurrentAcceptsLoseNothing) {
  const std::string dir = temp_dir();
  auto journal = JobJournal::open(dir);
  constexpr int kThreads = 8, kPerThread = 25;
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        try {
          // (Appended, not "t" + ...: GCC 12's -Wrestrict misfires on that.)
          std::string id = std::to_string(t);
          id.insert(0, 1, 't');
          id += '-';
          id += std::to_string(i);
          journal->accept(id, json{{"thread", t}, {"i", i}}, t * 1000 + i);
          if (i % 5 == 0) journal->running(id, 1);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "%s\n", e.what());
          ++errors;
        }
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);

  const auto rows = journal->load();
  ASSERT_EQ(rows.size(), size_t{kThreads * kPerThread});
  std::vector<int> last_i(kThreads, -1);
  for (size_t n = 0; n < rows.size(); ++n) {
    EXPECT_EQ(rows[n].seq, static_cast<int64_t>(n + 1));  // no gap, no duplicate
    const int t = rows[n].request["thread"], i = rows[n].request["i"];
    EXPECT_EQ(i, last_i[t] + 1) << "thread " << t << "'s accepts out of order";
    last_i[t] = i;
    EXPECT_EQ(rows[n].state, i % 5 == 0 ? "running" : "queued");
  }
}

TEST(JobJournal, RefusesGarbageWithAClearMessage) {
  const std::string dir = temp_dir();
  {
    std::ofstream f(dir + "/jobs.sqlite3", std::ios::binary);
    std::mt19937 rng(16);
    for (int i = 0; i < 8192; ++i) f.put(static_cast<char>(rng()));
  }
  auto err = journal_error([&] { JobJournal::open(dir); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), JournalErrorKind::kCorrupt);
  const std::string what = err->what();
  EXPECT_NE(what.find(dir + "/jobs.sqlite3"), std::string::npos) << what;
  EXPECT_NE(what.find("not a database"), std::string::npos) << what;
  EXPECT_NE(what.find("move it away"), std::string::npos) << what;
  std::printf("[ journal ] garbage file: %s\n", what.c_str());
}

TEST(JobJournal, RefusesATruncatedFile) {
  const std::string dir = temp_dir();
  {
    auto journal = JobJournal::open(dir);
    for (int i = 0; i < 300; ++i)
      journal->accept(job_id(i), json{{"prompt", std::string(500, 'a' + i % 26)}}, i);
  }
  const std::string path = dir + "/jobs.sqlite3";
  const auto size = fs::file_size(path);
  ASSERT_GT(size, 64u * 1024);
  fs::resize_file(path, size / 2);
  auto err = journal_error([&] {
    auto journal = JobJournal::open(dir);
    journal->load();
  });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), JournalErrorKind::kCorrupt) << err->what();
  std::printf("[ journal ] truncated file: %s\n", err->what());
}

TEST(JobJournal, RefusesANewerSchemaAndAForeignDatabase) {
  const std::string dir = temp_dir();
  JobJournal::open(dir);  // creates it, version 1
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/jobs.sqlite3").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = 99 WHERE key = 'schema_version'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto err = journal_error([&] { JobJournal::open(dir); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), JournalErrorKind::kSchema);
  EXPECT_NE(std::string(err->what()).find("newer foley (schema version 99"), std::string::npos)
      << err->what();

  const std::string other = temp_dir();
  ASSERT_EQ(sqlite3_open((other + "/jobs.sqlite3").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE photos(x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  err = journal_error([&] { JobJournal::open(other); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), JournalErrorKind::kSchema);
  EXPECT_NE(std::string(err->what()).find("not a foley job journal (tables: photos)"),
            std::string::npos)
      << err->what();
  // ... and left untouched.
  ASSERT_EQ(sqlite3_open((other + "/jobs.sqlite3").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 1);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST(JobJournal, SecondOpenerIsRefused) {
  // One server per data dir: a second would re-run the first one's running jobs.
  const std::string dir = temp_dir();
  auto first = JobJournal::open(dir);
  first->accept("a", json::object(), 0);
  auto err = journal_error([&] { JobJournal::open(dir); });
  ASSERT_TRUE(err);
  EXPECT_NE(std::string(err->what()).find("another process holds the journal"),
            std::string::npos)
      << err->what();
  first->accept("b", json::object(), 0);  // the first is unaffected
  first.reset();
  EXPECT_EQ(JobJournal::open(dir)->load().size(), 2u);
}

// A small tmpfs at a fresh directory, unmounted at scope exit; empty when mounting is not allowed.
struct SmallMount {
  std::string dir;
  explicit SmallMount(const char* size) {
    const std::string d = temp_dir() + "/mnt";
    fs::create_directories(d);
    if (::mount("tmpfs", d.c_str(), "tmpfs", 0, size) == 0) dir = d;
  }
  ~SmallMount() {
    if (!dir.empty()) ::umount2(dir.c_str(), MNT_DETACH);
  }
};

TEST(JobJournal, ReadOnlyMountIsReportedAsReadOnly) {
  SmallMount mnt("size=1m");
  if (mnt.dir.empty())
    GTEST_SKIP() << "mounting a tmpfs needs root (CAP_SYS_ADMIN): " << std::strerror(errno);
  {
    auto journal = JobJournal::open(mnt.dir);
    journal->accept("a", json::object(), 0);
  }
  ASSERT_EQ(::mount("tmpfs", mnt.dir.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=1m"), 0)
      << std::strerror(errno);
  auto err = journal_error([&] { JobJournal::open(mnt.dir); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), JournalErrorKind::kReadOnly) << err->what();
  std::printf("[ journal ] read-only mount: %s\n", err->what());

  // A data dir that does not exist is an I/O error, not a crash.
  err = journal_error([&] { JobJournal::open(temp_dir() + "/missing"); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->kind(), JournalErrorKind::kIo) << err->what();
}

TEST(JobJournal, FullDiskIsReportedAsFullAndRecovers) {
  SmallMount mnt("size=64k");
  if (mnt.dir.empty())
    GTEST_SKIP() << "mounting a tmpfs needs root (CAP_SYS_ADMIN): " << std::strerror(errno);
  auto journal = JobJournal::open(mnt.dir);
  // Something the "janitor" can delete later to make room.
  {
    std::ofstream filler(mnt.dir + "/filler", std::ios::binary);
    filler << std::string(12 * 1024, 'f');
  }
  int accepted = 0;
  std::optional<JournalError> err;
  for (int i = 0; i < 100 && !err; ++i) {
    try {
      journal->accept(job_id(i), json{{"prompt", std::string(3000, 'p')}}, i);
      ++accepted;
    } catch (const JournalError& e) {
      err = e;
    }
  }
  ASSERT_TRUE(err) << "64 KiB never filled up";
  EXPECT_EQ(err->kind(), JournalErrorKind::kFull) << err->what();
  std::printf("[ journal ] full disk after %d accepts: %s\n", accepted, err->what());

  // What was accepted is intact, and the journal works again once space is freed.
  EXPECT_EQ(journal->load().size(), static_cast<size_t>(accepted));
  fs::remove(mnt.dir + "/filler");
  journal->accept("after", json::object(), 0);
  journal.reset();
  auto reopened = JobJournal::open(mnt.dir);
  const auto rows = reopened->load();
  ASSERT_EQ(rows.size(), static_cast<size_t>(accepted + 1));
  EXPECT_EQ(rows.back().id, "after");
}

TEST(JobJournal, AcceptLatency) {
  // Printed, not asserted: what one accept (a WAL append + fsync) costs on this machine's disk,
  // which decides whether the server can call it inline before answering 202.
  const std::string dir = temp_dir();
  auto journal = JobJournal::open(dir);
  auto measure = [&](const char* what, auto&& call) {
    std::vector<double> ms;
    for (int i = 0; i < 200; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      call(i);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                       .count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("[ journal ] %s on %s: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                what, dir.c_str(), ms[100], ms[180], ms[198], ms[199]);
  };
  measure("accept", [&](int i) { journal->accept(job_id(i), sample_request(i), 1.7e9 + i); });
  measure("running", [&](int i) { journal->running(job_id(i), 1.7e9 + i); });
  measure("finished", [&](int i) {
    journal->finished(job_id(i), "succeeded", 1.7e9 + i, sample_result(i), nullptr);
  });
  const auto t0 = std::chrono::steady_clock::now();
  const auto rows = journal->load();
  std::printf("[ journal ] load of %zu rows: %.2f ms\n", rows.size(),
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count());
}

}  // namespace
}  // namespace foley::test

#endif  // FOLEY_HAVE_HTTP
