// A durable record of the server's jobs (issue 16, embedded mode): one SQLite file,
// DATA_DIR/jobs.sqlite3, so that after kill -9 or a power cut a restart on the same data dir can
// run queued jobs, run interrupted ones again from their stored inputs, and keep serving finished
// results (GET, SSE, downloads) until their TTL.
//
// Durability: WAL mode with synchronous=FULL, so every write method returns only after its
// transaction is on stable storage; the server may answer 202 once accept() has returned.
// Everything is behind one mutex (one connection, prepared statements kept), so any thread may
// call any method. Every SQLite failure throws JournalError, whose kind tells a full disk (507)
// from a read-only or failing one (503) and from a damaged file (refuse to start).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

struct sqlite3;
struct sqlite3_stmt;

namespace foley_server {

enum class JournalErrorKind {
  kFull,      // no space left (SQLITE_FULL, ENOSPC, EDQUOT): answer 507
  kReadOnly,  // read-only file, directory or mount (SQLITE_READONLY, EROFS, EACCES): 503
  kIo,        // any other I/O failure, or the file cannot be opened (SQLITE_IOERR/CANTOPEN): 503
  kCorrupt,   // not a database, damaged pages or rows (SQLITE_CORRUPT/NOTADB, failed check)
  kSchema,    // written by a newer foley (a schema_version this build does not know)
  kOther,     // anything else (busy past the timeout, misuse, a duplicate id, ...)
};
const char* journal_error_kind_name(JournalErrorKind kind);  // "full", "readonly", ...

class JournalError : public std::runtime_error {
 public:
  JournalError(JournalErrorKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  JournalErrorKind kind() const { return kind_; }

 private:
  JournalErrorKind kind_;
};

class JobJournal {
 public:
  static constexpr int kSchemaVersion = 1;
  static constexpr const char* kFileName = "jobs.sqlite3";

  struct Row {
    std::string id;
    std::string state;         // queued, running, succeeded, failed, cancelled
    nlohmann::json request;    // what accept() stored
    double created_at = 0;     // seconds since the Unix epoch
    std::optional<double> started_at, finished_at;
    nlohmann::json result;     // null unless finished() stored one
    nlohmann::json error;      // null unless finished() stored one
    int64_t attempts = 0;      // how many times running() was recorded
    int64_t seq = 0;           // acceptance order: 1 + the highest seq held when accepted
  };

  // Opens (creating, mode 0600: job ids are the secret that guards results) DATA_DIR/jobs.sqlite3.
  // The directory must exist. Refuses, with a JournalError, a file that is not a database or
  // fails SQLite's quick_check (kCorrupt), one from a newer schema (kSchema), and one that can
  // only be opened read-only (kReadOnly).
  static std::unique_ptr<JobJournal> open(const std::string& data_dir);
  ~JobJournal();
  JobJournal(const JobJournal&) = delete;
  JobJournal& operator=(const JobJournal&) = delete;

  const std::string& path() const { return path_; }

  // A new job in state queued, after every job accepted so far. A duplicate id throws (kOther).
  void accept(const std::string& id, const nlohmann::json& request, double created_at);
  // State running, started_at set, attempts + 1. False when the id is not in the journal.
  bool running(const std::string& id, double started_at);
  // A terminal state (succeeded, failed or cancelled; anything else throws std::invalid_argument)
  // with its result and error; a null json is stored as NULL. False when the id is unknown.
  bool finished(const std::string& id, const std::string& state, double finished_at,
                const nlohmann::json& result, const nlohmann::json& error);
  // Forgets a job (expired or deleted). False when the id is unknown.
  bool remove(const std::string& id);

  // Every job in acceptance order. A row whose JSON does not parse throws kCorrupt.
  std::vector<Row> load();
  // At start, before load(): jobs left running by a killed process go back to queued (started_at
  // cleared, attempts kept, so the caller can give up on a job that keeps killing the server).
  // Returns how many.
  size_t requeue_interrupted();

 private:
  JobJournal(std::string path, sqlite3* db);
  void prepare_statements();
  [[noreturn]] void fail(int rc, const std::string& what);  // the caller holds mutex_
  void step_done(sqlite3_stmt* stmt, const std::string& what);  // runs a write statement

  std::string path_;
  std::mutex mutex_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* accept_ = nullptr;
  sqlite3_stmt* running_ = nullptr;
  sqlite3_stmt* finished_ = nullptr;
  sqlite3_stmt* remove_ = nullptr;
  sqlite3_stmt* load_ = nullptr;
  sqlite3_stmt* requeue_ = nullptr;
};

}  // namespace foley_server
