#include "job_journal.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace foley_server {

namespace {

// The whole schema. No foreign keys, one row per job; JSON columns stay opaque text to SQLite so
// the server can change what it stores without a schema bump. The CHECK keeps a stray state
// string out (a restart decides what to do with a job by its state). seq is unique: it is the
// acceptance order a restart re-queues in.
constexpr const char* kCreateSchema = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE jobs(
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL
    CHECK(state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  request TEXT NOT NULL,
  created_at REAL,
  started_at REAL,
  finished_at REAL,
  result TEXT,
  error TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  seq INTEGER);
CREATE UNIQUE INDEX jobs_by_seq ON jobs(seq);
)sql";

JournalErrorKind classify(int rc, int sys_errno) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return JournalErrorKind::kFull;
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return JournalErrorKind::kReadOnly;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return JournalErrorKind::kCorrupt;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      // SQLite reports most OS failures as IOERR/CANTOPEN; errno says which the caller cares
      // about (a full disk can also surface as IOERR_WRITE or IOERR_FSYNC).
      if (sys_errno == ENOSPC || sys_errno == EDQUOT) return JournalErrorKind::kFull;
      if (sys_errno == EROFS || sys_errno == EACCES || sys_errno == EPERM)
        return JournalErrorKind::kReadOnly;
      return JournalErrorKind::kIo;
    default:
      return JournalErrorKind::kOther;
  }
}

std::string describe(sqlite3* db, int rc, const std::string& path, const std::string& what) {
  const int sys_errno = db ? sqlite3_system_errno(db) : 0;
  std::string message = "job journal " + path + ": " + what + ": ";
  message += db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  message += " (" + std::string(sqlite3_errstr(rc)) + ", SQLite code " + std::to_string(rc);
  if (sys_errno != 0) message += ", " + std::string(std::strerror(sys_errno));
  message += ")";
  const JournalErrorKind kind = classify(rc, sys_errno);
  if (kind == JournalErrorKind::kCorrupt)
    message += "; the file is damaged or not a foley job journal: move it away to start afresh"
               " (its jobs are lost)";
  if ((rc & 0xff) == SQLITE_BUSY)
    message += "; another process holds the journal (another foley serve on this --data-dir?)";
  return message;
}

// Resets a kept statement however a call leaves it (an error is described before this runs), so
// the next call starts clean and no read transaction stays open on a half-stepped SELECT.
struct ResetOnExit {
  sqlite3_stmt* stmt;
  ~ResetOnExit() {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
  }
};

std::string dump_json(const nlohmann::json& value, const char* field, const std::string& id) {
  try {
    return value.dump();
  } catch (const nlohmann::json::exception& e) {
    // Invalid UTF-8 in a string: storing a replacement would silently change a path or prompt.
    throw std::invalid_argument("job journal: the " + std::string(field) + " of job " + id +
                                " cannot be stored as JSON: " + e.what());
  }
}

}  // namespace

const char* journal_error_kind_name(JournalErrorKind kind) {
  switch (kind) {
    case JournalErrorKind::kFull: return "full";
    case JournalErrorKind::kReadOnly: return "readonly";
    case JournalErrorKind::kIo: return "io";
    case JournalErrorKind::kCorrupt: return "corrupt";
    case JournalErrorKind::kSchema: return "schema";
    case JournalErrorKind::kOther: return "other";
  }
  return "other";
}

std::unique_ptr<JobJournal> JobJournal::open(const std::string& data_dir) {
  const std::string path = data_dir + "/" + kFileName;

  // Created here rather than by SQLite so the mode is 0600 without touching the process umask
  // (other threads may create files meanwhile); SQLite gives its -wal file the same mode. An
  // existing file is narrowed to 0600 too. O_RDWR also tells a read-only file or mount apart
  // before SQLite would quietly fall back to opening it read-only.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int e = errno;
    const JournalErrorKind kind = (e == ENOSPC || e == EDQUOT) ? JournalErrorKind::kFull
                                  : (e == EROFS || e == EACCES || e == EPERM)
                                      ? JournalErrorKind::kReadOnly
                                      : JournalErrorKind::kIo;
    throw JournalError(kind, "job journal " + path + ": cannot open for writing: " +
                                 std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0 && (st.st_mode & 0077) != 0) ::fchmod(fd, 0600);
  ::close(fd);

  sqlite3* db = nullptr;
  // NOMUTEX: the journal's own mutex already serialises every use of this connection.
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = describe(db, rc, path, "cannot open");
    const int sys_errno = db ? sqlite3_system_errno(db) : 0;
    sqlite3_close(db);
    throw JournalError(classify(rc, sys_errno), message);
  }
  std::unique_ptr<JobJournal> journal(new JobJournal(path, db));
  std::lock_guard<std::mutex> lock(journal->mutex_);
  sqlite3_extended_result_codes(db, 1);
  if (sqlite3_db_readonly(db, "main") == 1)
    throw JournalError(JournalErrorKind::kReadOnly,
                       "job journal " + path + ": can only be opened read-only");

  auto exec = [&](const char* sql, const std::string& what) {
    const int r = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
    if (r != SQLITE_OK) journal->fail(r, what);
  };
  // Returns the first column of the first row a one-row pragma answers.
  auto pragma = [&](const char* sql, const std::string& what) {
    sqlite3_stmt* stmt = nullptr;
    int r = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
    if (r != SQLITE_OK) journal->fail(r, what);
    std::string value;
    r = sqlite3_step(stmt);
    if (r == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      value = text ? reinterpret_cast<const char*>(text) : "";
    } else if (r != SQLITE_DONE) {
      const std::string message = describe(db, r, path, what);
      const int sys_errno = sqlite3_system_errno(db);
      sqlite3_finalize(stmt);
      throw JournalError(classify(r, sys_errno), message);
    }
    sqlite3_finalize(stmt);
    return value;
  };

  // Waits this long for a lock held by another connection (there should be none: see below).
  sqlite3_busy_timeout(db, 2000);
  // Exclusive locking, set before the first read: one server per data dir. Two servers sharing a
  // journal would each re-run the other's "interrupted" jobs; with the lock the second fails at
  // open (busy). It also means WAL needs no -shm file. The lock is an fcntl lock: the kernel drops
  // it when the process dies, kill -9 included.
  pragma("PRAGMA locking_mode=EXCLUSIVE", "setting exclusive locking");
  // WAL: a commit is one append + fsync of the log (cheaper than a rollback journal's two), and a
  // torn last frame is ignored on recovery. synchronous=FULL: that fsync happens on every commit,
  // so an accepted job survives a power cut (NORMAL would only survive a process crash).
  const std::string mode = pragma("PRAGMA journal_mode=WAL", "switching to WAL");
  if (mode != "wal")
    throw JournalError(JournalErrorKind::kIo,
                       "job journal " + path + ": could not switch to WAL (journal mode '" +
                           mode + "')");
  exec("PRAGMA synchronous=FULL", "setting synchronous=FULL");

  // A damaged file fails here, at start, with a clear message rather than in the middle of
  // serving. quick_check reads every page (O(file), a few ms for the thousands of rows a TTL
  // keeps) without the full index cross-check.
  {
    sqlite3_stmt* stmt = nullptr;
    int r = sqlite3_prepare_v2(db, "PRAGMA quick_check(5)", -1, &stmt, nullptr);
    if (r != SQLITE_OK) journal->fail(r, "checking the file");
    std::string problems;
    while ((r = sqlite3_step(stmt)) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      const std::string line = text ? reinterpret_cast<const char*>(text) : "";
      if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
    }
    if (r != SQLITE_DONE) {
      const std::string message = describe(db, r, path, "checking the file");
      const int sys_errno = sqlite3_system_errno(db);
      sqlite3_finalize(stmt);
      throw JournalError(classify(r, sys_errno), message);
    }
    sqlite3_finalize(stmt);
    if (!problems.empty())
      throw JournalError(JournalErrorKind::kCorrupt,
                         "job journal " + path + ": the file is damaged (" + problems +
                             "); move it away to start afresh (its jobs are lost)");
  }

  // The schema, created on first open, in one exclusive transaction (which also takes the lock
  // that keeps a second server out from here on).
  exec("BEGIN EXCLUSIVE", "locking the journal");
  // Every table but SQLite's own: none on a fresh file; meta (and, at version 1, jobs) otherwise.
  const std::string tables = pragma(
      "SELECT group_concat(name) FROM (SELECT name FROM sqlite_schema WHERE type = 'table' "
      "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name)",
      "reading the schema");
  auto has_table = [&](const std::string& name) {
    return ("," + tables + ",").find("," + name + ",") != std::string::npos;
  };
  if (tables.empty()) {
    exec(kCreateSchema, "creating the schema");
    exec(("INSERT INTO meta(key, value) VALUES('schema_version', " +
          std::to_string(kSchemaVersion) + ")")
             .c_str(),
         "creating the schema");
  } else if (!has_table("meta")) {
    throw JournalError(JournalErrorKind::kSchema,
                       "job journal " + path + ": another program's database, not a foley job "
                       "journal (tables: " + tables + "); use another --data-dir");
  } else {
    const std::string version =
        pragma("SELECT value FROM meta WHERE key = 'schema_version'", "reading the schema");
    const int v = version.empty() ? 0 : std::atoi(version.c_str());
    if (v > kSchemaVersion)
      throw JournalError(JournalErrorKind::kSchema,
                         "job journal " + path + ": written by a newer foley (schema version " +
                             version + "; this build knows up to " +
                             std::to_string(kSchemaVersion) +
                             "): run that version, or use another --data-dir");
    if (v < 1 || !has_table("jobs"))
      throw JournalError(JournalErrorKind::kSchema,
                         "job journal " + path + ": not a foley job journal (tables: " + tables +
                             ", schema_version '" + version + "')");
    // v < kSchemaVersion: migrations go here when there is a version 2.
  }
  exec("COMMIT", "creating the schema");
  journal->prepare_statements();
  return journal;
}

JobJournal::JobJournal(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

JobJournal::~JobJournal() {
  for (sqlite3_stmt* stmt : {accept_, running_, finished_, remove_, load_, requeue_})
    sqlite3_finalize(stmt);
  // The last connection checkpoints the WAL into the main file and deletes it.
  sqlite3_close_v2(db_);
}

void JobJournal::fail(int rc, const std::string& what) {
  const std::string message = describe(db_, rc, path_, what);
  const JournalErrorKind kind = classify(rc, sqlite3_system_errno(db_));
  // A failed statement inside an explicit transaction may leave it open (SQLite rolls back by
  // itself only for some errors); never carry it into the next call.
  if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  throw JournalError(kind, message);
}

void JobJournal::prepare_statements() {
  auto prepare = [&](const char* sql, sqlite3_stmt** stmt) {
    const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, nullptr);
    if (rc != SQLITE_OK) fail(rc, std::string("preparing ") + sql);
  };
  // seq: the next acceptance number, computed in the same statement (so atomically: writes are
  // serialised) from the unique index.
  prepare(
      "INSERT INTO jobs(id, state, request, created_at, attempts, seq) VALUES(?1, 'queued', ?2, "
      "?3, 0, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs))",
      &accept_);
  // Only a job not yet finished can start: a cancel that won a race is never undone.
  prepare(
      "UPDATE jobs SET state = 'running', started_at = ?2, attempts = attempts + 1 "
      "WHERE id = ?1 AND state IN ('queued', 'running')",
      &running_);
  prepare("UPDATE jobs SET state = ?2, finished_at = ?3, result = ?4, error = ?5 WHERE id = ?1",
          &finished_);
  prepare("DELETE FROM jobs WHERE id = ?1", &remove_);
  prepare(
      "SELECT id, state, request, created_at, started_at, finished_at, result, error, attempts, "
      "seq FROM jobs ORDER BY seq",
      &load_);
  prepare("UPDATE jobs SET state = 'queued', started_at = NULL WHERE state = 'running'",
          &requeue_);
}

void JobJournal::step_done(sqlite3_stmt* stmt, const std::string& what) {
  const int rc = sqlite3_step(stmt);
  if (rc != SQLITE_DONE) fail(rc, what);
}

namespace {

// Binding failures (out of memory, too big) are reported like any SQLite error by the caller.
int bind_text(sqlite3_stmt* stmt, int index, const std::string& text) {
  return sqlite3_bind_text64(stmt, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
}

int bind_json(sqlite3_stmt* stmt, int index, const std::string& dumped, bool is_null) {
  return is_null ? sqlite3_bind_null(stmt, index) : bind_text(stmt, index, dumped);
}

nlohmann::json column_json(sqlite3_stmt* stmt, int column, bool* ok) {
  if (sqlite3_column_type(stmt, column) == SQLITE_NULL) return nullptr;
  const char* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
  const int size = sqlite3_column_bytes(stmt, column);
  nlohmann::json value = nlohmann::json::parse(text, text + size, nullptr, false);
  if (value.is_discarded()) *ok = false;
  return value;
}

std::optional<double> column_time(sqlite3_stmt* stmt, int column) {
  if (sqlite3_column_type(stmt, column) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_double(stmt, column);
}

}  // namespace

void JobJournal::accept(const std::string& id, const nlohmann::json& request, double created_at) {
  const std::string dumped = dump_json(request, "request", id);
  std::lock_guard<std::mutex> lock(mutex_);
  ResetOnExit reset{accept_};
  int rc = bind_text(accept_, 1, id);
  if (rc == SQLITE_OK) rc = bind_text(accept_, 2, dumped);
  if (rc == SQLITE_OK) rc = sqlite3_bind_double(accept_, 3, created_at);
  if (rc != SQLITE_OK) fail(rc, "accepting job " + id);
  rc = sqlite3_step(accept_);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
    throw JournalError(JournalErrorKind::kOther,
                       "job journal " + path_ + ": job " + id + " is already in the journal");
  if (rc != SQLITE_DONE) fail(rc, "accepting job " + id);
}

bool JobJournal::running(const std::string& id, double started_at) {
  std::lock_guard<std::mutex> lock(mutex_);
  ResetOnExit reset{running_};
  int rc = bind_text(running_, 1, id);
  if (rc == SQLITE_OK) rc = sqlite3_bind_double(running_, 2, started_at);
  if (rc != SQLITE_OK) fail(rc, "starting job " + id);
  step_done(running_, "starting job " + id);
  return sqlite3_changes(db_) > 0;
}

bool JobJournal::finished(const std::string& id, const std::string& state, double finished_at,
                          const nlohmann::json& result, const nlohmann::json& error) {
  if (state != "succeeded" && state != "failed" && state != "cancelled")
    throw std::invalid_argument("job journal: '" + state + "' is not a finished state (job " +
                                id + ")");
  const std::string result_text = result.is_null() ? "" : dump_json(result, "result", id);
  const std::string error_text = error.is_null() ? "" : dump_json(error, "error", id);
  std::lock_guard<std::mutex> lock(mutex_);
  ResetOnExit reset{finished_};
  int rc = bind_text(finished_, 1, id);
  if (rc == SQLITE_OK) rc = bind_text(finished_, 2, state);
  if (rc == SQLITE_OK) rc = sqlite3_bind_double(finished_, 3, finished_at);
  if (rc == SQLITE_OK) rc = bind_json(finished_, 4, result_text, result.is_null());
  if (rc == SQLITE_OK) rc = bind_json(finished_, 5, error_text, error.is_null());
  if (rc != SQLITE_OK) fail(rc, "finishing job " + id);
  step_done(finished_, "finishing job " + id);
  return sqlite3_changes(db_) > 0;
}

bool JobJournal::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mutex_);
  ResetOnExit reset{remove_};
  const int rc = bind_text(remove_, 1, id);
  if (rc != SQLITE_OK) fail(rc, "removing job " + id);
  step_done(remove_, "removing job " + id);
  return sqlite3_changes(db_) > 0;
}

std::vector<JobJournal::Row> JobJournal::load() {
  std::lock_guard<std::mutex> lock(mutex_);
  ResetOnExit reset{load_};
  std::vector<Row> rows;
  int rc;
  while ((rc = sqlite3_step(load_)) == SQLITE_ROW) {
    Row row;
    auto text = [&](int column) {
      const unsigned char* t = sqlite3_column_text(load_, column);
      return t ? std::string(reinterpret_cast<const char*>(t),
                             static_cast<size_t>(sqlite3_column_bytes(load_, column)))
               : std::string();
    };
    row.id = text(0);
    row.state = text(1);
    bool ok = true;
    row.request = column_json(load_, 2, &ok);
    row.created_at = sqlite3_column_double(load_, 3);
    row.started_at = column_time(load_, 4);
    row.finished_at = column_time(load_, 5);
    row.result = column_json(load_, 6, &ok);
    row.error = column_json(load_, 7, &ok);
    row.attempts = sqlite3_column_int64(load_, 8);
    row.seq = sqlite3_column_int64(load_, 9);
    if (!ok)
      throw JournalError(JournalErrorKind::kCorrupt,
                         "job journal " + path_ + ": job " + row.id + " holds JSON that does not "
                         "parse");
    rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) fail(rc, "loading jobs");
  return rows;
}

size_t JobJournal::requeue_interrupted() {
  std::lock_guard<std::mutex> lock(mutex_);
  ResetOnExit reset{requeue_};
  step_done(requeue_, "re-queueing interrupted jobs");
  return static_cast<size_t>(sqlite3_changes(db_));
}

}  // namespace foley_server
