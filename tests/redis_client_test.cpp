// The server's Redis client (tools/foley/server/redis_client.h) against a real redis-server 7.0
// (tests/redis_server.h): URL forms, binary-safe strings, error replies, pipelines, the stream
// commands the distributed job queue uses (with the reply shapes it must parse), blocking reads,
// timeouts, reconnecting after a crash + AOF restart, and refused connections.
//
// Reply shapes as Redis 7.0 returns them over RESP2 (hiredis 0.14), observed by the tests below.
// Notation: [..] = kArray, "s" = kString, 5 = kInteger, nil = kNil.
//
//   XADD s * f v ...                  -> "1700000000000-0"  (the new id)
//   XGROUP CREATE s g $|0 MKSTREAM    -> "OK"; again for the same group: kError "BUSYGROUP ..."
//   XREADGROUP GROUP g c [COUNT n] [BLOCK ms] STREAMS s >
//        -> [ ["s", [ ["id1", ["f","v",...]], ["id2", [...]] ]] ]   one element per stream
//        -> nil                       nothing new (also after BLOCK ms timed out)
//      with id 0 instead of > (the consumer's own pending entries, no BLOCK wait):
//        -> [ ["s", [ ["id1", ["f","v"]], ... ]] ]  and an entry deleted since (XDEL) comes back
//           as ["id", nil]; nothing pending -> [ ["s", []] ] (an empty list, not nil)
//   XACK s g id...                    -> 1 (number acknowledged; 0 for an unknown/acked id)
//   XAUTOCLAIM s g c min-idle-ms start [COUNT n]
//        -> [ "next-start-id", [ ["id", ["f","v",...]], ... ], [ "deleted-id", ... ] ]
//           next-start-id is "0-0" when the scan is complete; the third element (ids pending
//           but deleted from the stream, removed from the PEL by this call) is new in 7.0.
//   XREAD [COUNT n] BLOCK ms STREAMS s id|$
//        -> [ ["s", [ ["id", ["f","v",...]], ... ]] ]   or nil after ms without data
//   XPENDING s g                      (summary)
//        -> [ 2, "min-id", "max-id", [ ["consumer", "2"] ] ]   the per-consumer count is a STRING
//        -> [ 0, nil, nil, nil ]      nothing pending
//   XPENDING s g [IDLE ms] start end count [consumer]   (extended)
//        -> [ ["id", "consumer", idle-ms, delivery-count], ... ]   (integers), [] if none
//      delivery-count goes up on XREADGROUP >, on XREADGROUP with an explicit id (reading one's
//      own history counts as a delivery) and on XCLAIM/XAUTOCLAIM.
#ifdef FOLEY_HAVE_HTTP

#include "redis_client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "redis_server.h"
#include "test_util.h"

namespace {

using foley::test::RedisServer;
using foley_server::parse_redis_url;
using foley_server::RedisClient;
using foley_server::RedisError;
using foley_server::RedisReply;
using foley_server::RedisUrl;
using Type = RedisReply::Type;

#define REQUIRE_REDIS()                                                          \
  do {                                                                           \
    if (!RedisServer::available()) FOLEY_SKIP_MISSING("redis-server not installed"); \
  } while (0)

// A compact rendering of a reply for failure messages and shape checks.
std::string shape(const RedisReply& r) {
  switch (r.type) {
    case Type::kNil: return "nil";
    case Type::kInteger: return std::to_string(r.integer);
    case Type::kString: return "\"" + r.str + "\"";
    case Type::kError: return "ERR(" + r.str + ")";
    case Type::kArray: {
      std::string s = "[";
      for (size_t i = 0; i < r.elements.size(); ++i) s += (i ? "," : "") + shape(r.elements[i]);
      return s + "]";
    }
  }
  return "?";
}

int unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(RedisUrl, GoodForms) {
  RedisUrl u = parse_redis_url("redis://localhost");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 6379);
  EXPECT_EQ(u.db, 0);
  EXPECT_EQ(u.password, "");

  u = parse_redis_url("redis://10.0.0.5:6380/3");
  EXPECT_EQ(u.host, "10.0.0.5");
  EXPECT_EQ(u.port, 6380);
  EXPECT_EQ(u.db, 3);

  u = parse_redis_url("redis://:s3cr@t/x@redis.internal:7000/2");
  EXPECT_EQ(u.password, "s3cr@t/x");  // everything up to the last '@'
  EXPECT_EQ(u.host, "redis.internal");
  EXPECT_EQ(u.port, 7000);
  EXPECT_EQ(u.db, 2);

  u = parse_redis_url("redis://host/");
  EXPECT_EQ(u.db, 0);
  u = parse_redis_url("redis://[::1]:6390/1");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 6390);
  EXPECT_EQ(u.db, 1);

  // to_string never shows the password.
  const std::string s = foley_server::to_string(parse_redis_url("redis://:hunter2@h:1/4"));
  EXPECT_EQ(s.find("hunter2"), std::string::npos) << s;
  EXPECT_NE(s.find("h:1/4"), std::string::npos) << s;
  EXPECT_EQ(foley_server::to_string(parse_redis_url("redis://h")), "redis://h:6379/0");
}

TEST(RedisUrl, BadForms) {
  struct Case {
    const char* url;
    const char* mentions;
  };
  const Case cases[] = {
      {"", "redis://"},
      {"http://h:1", "redis://"},
      {"rediss://h", "TLS"},
      {"redis://", "no host"},
      {"redis://:6379", "no host"},
      {"redis://h:", "empty port"},
      {"redis://h:abc", "port 'abc'"},
      {"redis://h:0", "port '0'"},
      {"redis://h:65536", "port '65536'"},
      {"redis://h:12x", "port '12x'"},
      {"redis://h/abc", "database 'abc'"},
      {"redis://h/-1", "database '-1'"},
      {"redis://user:pw@h", "user name"},
      {"redis://:@h", "empty password"},
      {"redis://[::1", "unterminated"},
  };
  for (const auto& c : cases) {
    try {
      parse_redis_url(c.url);
      ADD_FAILURE() << "accepted: " << c.url;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(c.mentions), std::string::npos)
          << c.url << " -> " << e.what();
    }
  }
  // The password does not leak into the message either.
  try {
    parse_redis_url("redis://:hunter2@h:bad");
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << e.what();
  }
}

TEST(RedisClient, SetGetBinarySafe) {
  REQUIRE_REDIS();
  RedisServer redis;
  RedisClient c(parse_redis_url(redis.url()));
  EXPECT_EQ(c.url().port, redis.port());
  EXPECT_TRUE(c.ping());
  const std::string key("k\0ey\r\n", 6);
  std::string value("a\0b\0\r\n$3\r\n", 10);
  value += std::string(1 << 20, '\xff');
  RedisReply r = c.command({"SET", key, value});
  EXPECT_EQ(r.as_string(), "OK");
  r = c.command({"GET", key});
  ASSERT_EQ(r.type, Type::kString);
  EXPECT_EQ(r.str.size(), value.size());
  EXPECT_TRUE(r.str == value);
  // nil is a reply, not an error
  r = c.command({"GET", "missing"});
  EXPECT_TRUE(r.is_nil());
  EXPECT_THROW(r.as_string(), RedisError);
  r = c.command({"INCRBY", "n", "41"});
  EXPECT_EQ(r.as_integer(), 41);
  EXPECT_THROW(r.at(0), RedisError);
}

TEST(RedisClient, ErrorReplyThrowsRedisMessage) {
  REQUIRE_REDIS();
  RedisServer redis;
  RedisClient c(parse_redis_url(redis.url()));
  c.command({"SET", "s", "text"});
  try {
    c.command({"INCR", "s"});
    FAIL() << "no throw";
  } catch (const RedisError& e) {
    EXPECT_FALSE(e.connection());
    EXPECT_EQ(std::string(e.what()), "ERR value is not an integer or out of range");
  }
  try {
    c.command({"NOSUCHCOMMAND", "x"});
    FAIL() << "no throw";
  } catch (const RedisError& e) {
    EXPECT_FALSE(e.connection());
    EXPECT_NE(std::string(e.what()).find("unknown command"), std::string::npos) << e.what();
  }
  // The connection is still good after an error reply.
  EXPECT_EQ(c.command({"GET", "s"}).as_string(), "text");
  EXPECT_THROW(c.command({}), RedisError);
}

TEST(RedisClient, PipelineKeepsOrderWithErrorInTheMiddle) {
  REQUIRE_REDIS();
  RedisServer redis;
  RedisClient c(parse_redis_url(redis.url()));
  const auto replies = c.pipeline({{"SET", "a", "1"},
                                   {"INCR", "a"},
                                   {"LPUSH", "a", "x"},  // WRONGTYPE
                                   {"GET", "a"},
                                   {"GET", "nothing"},
                                   {"MGET", "a", "nothing"}});
  ASSERT_EQ(replies.size(), 6u);
  EXPECT_EQ(shape(replies[0]), "\"OK\"");
  EXPECT_EQ(shape(replies[1]), "2");
  ASSERT_EQ(replies[2].type, Type::kError);
  EXPECT_EQ(replies[2].str.rfind("WRONGTYPE", 0), 0u) << replies[2].str;
  EXPECT_THROW(replies[2].as_string(), RedisError);
  EXPECT_EQ(shape(replies[3]), "\"2\"");
  EXPECT_EQ(shape(replies[4]), "nil");
  EXPECT_EQ(shape(replies[5]), "[\"2\",nil]");
  EXPECT_TRUE(c.pipeline({}).empty());
  EXPECT_EQ(c.command({"GET", "a"}).as_string(), "2");  // stream still in step
}

TEST(RedisClient, AuthAndSelect) {
  REQUIRE_REDIS();
  RedisServer redis("pass word:@/");
  RedisUrl url = parse_redis_url(redis.url());
  EXPECT_EQ(url.password, "pass word:@/");
  url.db = 5;
  RedisClient c(url);
  c.command({"SET", "where", "db5"});
  url.db = 0;
  RedisClient c0(url);
  EXPECT_TRUE(c0.command({"GET", "where"}).is_nil());
  c0.command({"SELECT", "5"});
  EXPECT_EQ(c0.command({"GET", "where"}).as_string(), "db5");

  url.password = "wrong";
  try {
    RedisClient bad(url);
    FAIL() << "wrong password accepted";
  } catch (const RedisError& e) {
    EXPECT_FALSE(e.connection()) << e.what();  // Redis answered: retrying will not help
    EXPECT_NE(std::string(e.what()).find("AUTH"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("wrong"), std::string::npos) << e.what();
  }
}

// The distributed queue's round trip, with the reply shapes documented at the top of the file.
TEST(RedisClient, StreamsConsumerGroupRoundTrip) {
  REQUIRE_REDIS();
  RedisServer redis;
  RedisClient c(parse_redis_url(redis.url()));

  EXPECT_EQ(c.command({"XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"}).as_string(), "OK");
  try {
    c.command({"XGROUP", "CREATE", "jobs", "workers", "$", "MKSTREAM"});
    FAIL() << "second XGROUP CREATE accepted";
  } catch (const RedisError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("BUSYGROUP", 0), 0u) << e.what();
  }

  // Nothing yet: nil.
  RedisReply r = c.command({"XREADGROUP", "GROUP", "workers", "w1", "COUNT", "10", "STREAMS",
                            "jobs", ">"});
  EXPECT_TRUE(r.is_nil()) << shape(r);

  const std::string payload("{\"id\":\"j1\"}\0bin", 15);
  const std::string id1 = c.command({"XADD", "jobs", "*", "job", payload}).as_string();
  const std::string id2 = c.command({"XADD", "jobs", "*", "job", "j2", "try", "1"}).as_string();
  EXPECT_NE(id1.find('-'), std::string::npos) << id1;

  r = c.command({"XREADGROUP", "GROUP", "workers", "w1", "COUNT", "10", "STREAMS", "jobs", ">"});
  std::printf("XREADGROUP >  : %s\n", shape(r).c_str());
  ASSERT_EQ(r.type, Type::kArray);
  ASSERT_EQ(r.size(), 1u);                    // one per stream
  EXPECT_EQ(r.at(0).at(0).as_string(), "jobs");  // [stream, entries]
  const RedisReply& entries = r.at(0).at(1);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries.at(0).at(0).as_string(), id1);  // [id, [field, value, ...]]
  ASSERT_EQ(entries.at(0).at(1).size(), 2u);
  EXPECT_EQ(entries.at(0).at(1).at(0).as_string(), "job");
  EXPECT_TRUE(entries.at(0).at(1).at(1).as_string() == payload);
  EXPECT_EQ(entries.at(1).at(0).as_string(), id2);
  EXPECT_EQ(shape(entries.at(1).at(1)), "[\"job\",\"j2\",\"try\",\"1\"]");

  // XPENDING summary: [count, min, max, [[consumer, "count"]]] (the per-consumer count is a string).
  r = c.command({"XPENDING", "jobs", "workers"});
  std::printf("XPENDING      : %s\n", shape(r).c_str());
  EXPECT_EQ(shape(r), "[2,\"" + id1 + "\",\"" + id2 + "\",[[\"w1\",\"2\"]]]");
  // Extended: [[id, consumer, idle-ms, deliveries]].
  r = c.command({"XPENDING", "jobs", "workers", "-", "+", "10"});
  std::printf("XPENDING ext  : %s\n", shape(r).c_str());
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r.at(0).at(0).as_string(), id1);
  EXPECT_EQ(r.at(0).at(1).as_string(), "w1");
  EXPECT_EQ(r.at(0).at(2).type, Type::kInteger);
  EXPECT_GE(r.at(0).at(2).as_integer(), 0);
  EXPECT_EQ(r.at(0).at(3).as_integer(), 1);

  // w1 acknowledges the first; the second stays pending (w1 "crashed").
  EXPECT_EQ(c.command({"XACK", "jobs", "workers", id1}).as_integer(), 1);
  EXPECT_EQ(c.command({"XACK", "jobs", "workers", id1}).as_integer(), 0);

  // w1's own history (id 0): its pending entries only.
  r = c.command({"XREADGROUP", "GROUP", "workers", "w1", "STREAMS", "jobs", "0"});
  std::printf("XREADGROUP 0  : %s\n", shape(r).c_str());
  ASSERT_EQ(r.at(0).at(1).size(), 1u);
  EXPECT_EQ(r.at(0).at(1).at(0).at(0).as_string(), id2);

  // w2 claims what was idle >= 0 ms: [next-start, [[id, [f, v...]]], [deleted ids]].
  const std::string id3 = c.command({"XADD", "jobs", "*", "job", "j3"}).as_string();
  c.command({"XREADGROUP", "GROUP", "workers", "w1", "STREAMS", "jobs", ">"});  // id3 -> w1
  c.command({"XDEL", "jobs", id3});  // pending but deleted
  // w1's history shows a deleted entry as [id, nil]. Reading history counts as a delivery.
  r = c.command({"XREADGROUP", "GROUP", "workers", "w1", "STREAMS", "jobs", "0"});
  std::printf("XREADGROUP 0  : %s (after XDEL)\n", shape(r).c_str());
  EXPECT_EQ(shape(r), "[[\"jobs\",[[\"" + id2 + "\",[\"job\",\"j2\",\"try\",\"1\"]],[\"" + id3 +
                          "\",nil]]]]");
  r = c.command({"XAUTOCLAIM", "jobs", "workers", "w2", "0", "0-0", "COUNT", "10"});
  std::printf("XAUTOCLAIM    : %s\n", shape(r).c_str());
  ASSERT_EQ(r.type, Type::kArray);
  ASSERT_EQ(r.size(), 3u);  // Redis 7.0: the third element lists deleted ids
  EXPECT_EQ(r.at(0).as_string(), "0-0");  // scan complete
  ASSERT_EQ(r.at(1).size(), 1u);
  EXPECT_EQ(r.at(1).at(0).at(0).as_string(), id2);
  EXPECT_EQ(shape(r.at(1).at(0).at(1)), "[\"job\",\"j2\",\"try\",\"1\"]");
  EXPECT_EQ(shape(r.at(2)), "[\"" + id3 + "\"]");

  r = c.command({"XPENDING", "jobs", "workers", "-", "+", "10"});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r.at(0).at(1).as_string(), "w2");
  // Deliveries: XREADGROUP >, two XREADGROUP 0 (history reads count), XAUTOCLAIM.
  EXPECT_EQ(r.at(0).at(3).as_integer(), 4);

  // w1's history is empty now: [[stream, []]], not nil.
  r = c.command({"XREADGROUP", "GROUP", "workers", "w1", "STREAMS", "jobs", "0"});
  EXPECT_EQ(shape(r), "[[\"jobs\",[]]]");

  EXPECT_EQ(c.command({"XACK", "jobs", "workers", id2}).as_integer(), 1);
  r = c.command({"XPENDING", "jobs", "workers"});
  std::printf("XPENDING none : %s\n", shape(r).c_str());
  EXPECT_EQ(shape(r), "[0,nil,nil,nil]");
  r = c.command({"XAUTOCLAIM", "jobs", "workers", "w2", "0", "0-0"});
  EXPECT_EQ(shape(r), "[\"0-0\",[],[]]");
}

TEST(RedisClient, BlockingXreadTimesOutWithNil) {
  REQUIRE_REDIS();
  RedisServer redis;
  RedisClient c(parse_redis_url(redis.url()), 0.5);
  c.set_timeout(1.0);
  const auto t0 = std::chrono::steady_clock::now();
  RedisReply r = c.command({"XREAD", "BLOCK", "200", "STREAMS", "events", "$"});
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(r.is_nil()) << shape(r);
  EXPECT_GE(ms, 190.0);
  EXPECT_LT(ms, 900.0);
  std::printf("XREAD BLOCK 200 (empty): %s after %.0f ms\n", shape(r).c_str(), ms);

  // With data: [[stream, [[id, [f, v]]]]].
  const std::string id = c.command({"XADD", "events", "*", "e", "1"}).as_string();
  r = c.command({"XREAD", "BLOCK", "200", "STREAMS", "events", "0"});
  std::printf("XREAD BLOCK 200 (data) : %s\n", shape(r).c_str());
  EXPECT_EQ(shape(r), "[[\"events\",[[\"" + id + "\",[\"e\",\"1\"]]]]]");

  // A BLOCK longer than the socket timeout: a connection error (the reply may still come, so
  // the connection is dropped); the next command reconnects.
  c.set_timeout(0.1);
  try {
    c.command({"XREAD", "BLOCK", "2000", "STREAMS", "events", "$"});
    FAIL() << "no timeout";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.connection());
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(c.connected());
  c.set_timeout(1.0);
  EXPECT_EQ(c.command({"XLEN", "events"}).as_integer(), 1);
}

TEST(RedisClient, ReconnectsAfterCrashAndAofRestart) {
  REQUIRE_REDIS();
  RedisServer redis;
  RedisClient c(parse_redis_url(redis.url()), 2.0);
  c.command({"SET", "durable", "yes"});
  const std::string id = c.command({"XADD", "jobs", "*", "job", "j1"}).as_string();
  c.command({"XGROUP", "CREATE", "jobs", "workers", "0"});

  redis.kill9();
  // The command that meets the broken connection fails and is not resent.
  try {
    c.command({"INCR", "counter"});
    FAIL() << "command on a dead server succeeded";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.connection()) << e.what();
  }
  // Still down: the reconnect is refused, again a connection error.
  try {
    c.command({"GET", "durable"});
    FAIL() << "command on a dead server succeeded";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.connection()) << e.what();
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(redis.port())),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(c.ping());

  redis.restart();
  EXPECT_EQ(c.command({"GET", "durable"}).as_string(), "yes");
  EXPECT_TRUE(c.command({"GET", "counter"}).is_nil());  // the failed INCR was not resent
  RedisReply r = c.command({"XREADGROUP", "GROUP", "workers", "w", "STREAMS", "jobs", ">"});
  EXPECT_EQ(r.at(0).at(1).at(0).at(0).as_string(), id);
  EXPECT_TRUE(c.ping());

  // A clean stop (SIGTERM) works the same way.
  redis.stop();
  EXPECT_FALSE(c.ping());
  redis.restart();
  EXPECT_TRUE(c.ping());
  EXPECT_EQ(c.command({"XPENDING", "jobs", "workers"}).at(0).as_integer(), 1);
}

TEST(RedisClient, ConnectionRefusedNamesHostAndPort) {
  RedisUrl url;
  url.port = unused_port();
  try {
    RedisClient c(url, 1.0);
    FAIL() << "connected to a closed port";
  } catch (const RedisError& e) {
    EXPECT_TRUE(e.connection());
    const std::string what = e.what();
    EXPECT_NE(what.find("127.0.0.1:" + std::to_string(url.port)), std::string::npos) << what;
    EXPECT_NE(what.find("refused"), std::string::npos) << what;
  }
}

TEST(RedisServerFixture, StartsStopsAndCleansUp) {
  REQUIRE_REDIS();
  std::string dir;
  pid_t pid = -1;
  {
    RedisServer a;
    RedisServer b;  // two at once get different ports
    EXPECT_NE(a.port(), b.port());
    EXPECT_EQ(a.url(), "redis://127.0.0.1:" + std::to_string(a.port()) + "/0");
    dir = a.dir();
    pid = a.pid();
    EXPECT_TRUE(std::filesystem::exists(dir + "/redis.conf"));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_NE(::kill(pid, 0), 0);  // reaped and gone
}

}  // namespace

#endif  // FOLEY_HAVE_HTTP
