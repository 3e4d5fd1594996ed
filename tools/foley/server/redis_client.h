// A small synchronous Redis client over hiredis for the distributed job queue (Redis Streams).
// Replies are copied out of hiredis into plain values so callers never see hiredis types.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

struct redisContext;

namespace foley_server {

struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string password;
};

// redis://[:password@]host[:port][/db] ; throws std::invalid_argument naming what is wrong.
// A user name before the colon (redis://user:pw@...) is refused: AUTH with one argument only.
RedisUrl parse_redis_url(const std::string& url);
std::string to_string(const RedisUrl&);  // without the password: safe for logs and errors

class RedisError : public std::runtime_error {
 public:
  RedisError(const std::string& what, bool connection);
  // true: the connection failed or was lost (retry may help); false: Redis answered an error
  bool connection() const { return connection_; }

 private:
  bool connection_;
};

struct RedisReply {
  enum class Type { kNil, kInteger, kString, kArray, kError };
  Type type = Type::kNil;
  long long integer = 0;
  std::string str;                   // bulk or status string, or the error text
  std::vector<RedisReply> elements;  // arrays (nested)

  bool is_nil() const { return type == Type::kNil; }
  bool is_string() const { return type == Type::kString; }
  bool is_integer() const { return type == Type::kInteger; }
  bool is_array() const { return type == Type::kArray; }
  bool is_error() const { return type == Type::kError; }
  // The string; throws RedisError(false) for any other type (a kError throws with its text).
  const std::string& as_string() const;
  // The integer; throws RedisError(false) for any other type.
  long long as_integer() const;
  // Element i of an array; throws RedisError(false) if not an array or i is out of range.
  const RedisReply& at(size_t i) const;
  size_t size() const { return elements.size(); }
};

// One connection, not thread-safe (one per thread). Connects at construction (throws RedisError
// connection=true if it cannot), sends AUTH and SELECT when the URL asks. After a connection
// error, the next command reconnects first (once); a command that was sent when the connection
// broke is NOT resent (the caller decides: it may not be idempotent).
class RedisClient {
 public:
  explicit RedisClient(RedisUrl url, double timeout_seconds = 5.0);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  RedisReply command(const std::vector<std::string>& argv);  // binary-safe (redisCommandArgv)
  // Several commands in one round trip; replies in order (an error reply is a kError element, not
  // a throw). A connection error throws: which of the commands ran is then unknown.
  std::vector<RedisReply> pipeline(const std::vector<std::vector<std::string>>& commands);
  bool ping() noexcept;  // PING answered PONG within the timeout
  // For blocking commands (XREAD/XREADGROUP BLOCK ms): the socket read timeout for the next
  // commands; must exceed the BLOCK time. Kept across reconnects.
  void set_timeout(double seconds);
  const RedisUrl& url() const { return url_; }
  // False after a connection error until the next command reconnects.
  bool connected() const { return ctx_ != nullptr; }

 private:
  void connect();     // throws RedisError(connection=true)
  void disconnect();  // frees the context
  void ensure_connected();
  [[noreturn]] void fail_connection(const std::string& during);

  RedisUrl url_;
  double connect_timeout_;
  double timeout_;
  redisContext* ctx_ = nullptr;
};

}  // namespace foley_server
