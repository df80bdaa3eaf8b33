// The JSON reader and the QMP client against a scripted QMP server: replies
// split across reads, events between a command and its reply, error replies,
// and deadlines; and what UnixConnection refuses to connect to (a symlink,
// a socket of another UID). The client against real QEMU: tests/integration.
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <thread>

#include "common/error.h"
#include "tests/support/support.h"
#include "vm-launcher/json.h"
#include "vm-launcher/qmp.h"

namespace vmwarden::vm {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

Deadline in(std::chrono::milliseconds duration) { return std::chrono::steady_clock::now() + duration; }

TEST(Json, ParsesWhatQmpSends) {
  Json value = parse_json(
      R"({"return": {"status": "running", "running": true, "n": -1.5e2, "list": [1, null, "a\"b\u00e9\ud83d\ude00"]}})");
  const Json* result = value.find("return");
  ASSERT_NE(result, nullptr);
  EXPECT_EQ(result->string_member("status"), "running");
  EXPECT_TRUE(result->find("running")->boolean);
  EXPECT_EQ(result->find("n")->number, -150);
  const Json& list = *result->find("list");
  ASSERT_EQ(list.items.size(), 3u);
  EXPECT_EQ(list.items[1].type, Json::Type::null);
  EXPECT_EQ(list.items[2].string, "a\"b\xc3\xa9\xf0\x9f\x98\x80");
  EXPECT_EQ(result->string_member("missing"), "");
}

TEST(Json, RefusesDefects) {
  for (const char* bad : {"", "{", R"({"a" 1})", R"({"a": 1,})", "[1 2]", R"("\x")", "tru", "01x", "{} {}",
                          "\"a\nb\"", R"("\ud800")", "-", "1."})
    EXPECT_THROW(parse_json(bad), std::runtime_error) << bad;
}

TEST(Json, QuotesStrings) {
  EXPECT_EQ(json_quote("a\"b\\c\n\x01"), R"("a\"b\\c\n\u0001")");
  EXPECT_EQ(parse_json(json_quote("/srv/a \"b\"\t,=:")).string, "/srv/a \"b\"\t,=:");
}

// A path is any bytes; the JSON written is always valid: valid UTF-8 passes
// through, every other byte becomes U+FFFD.
TEST(Json, QuotesBytesThatAreNotUtf8AsReplacementCharacters) {
  EXPECT_EQ(json_quote("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  EXPECT_EQ(json_quote("a\xff" "b"), R"("a\ufffdb")");
  EXPECT_EQ(json_quote("\xc3"), R"("\ufffd")") << "cut short";
  EXPECT_EQ(json_quote("\xc0\xaf"), R"("\ufffd\ufffd")") << "overlong";
  EXPECT_EQ(json_quote("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")") << "surrogate";
  EXPECT_EQ(json_quote("\xf4\x90\x80\x80"), R"("\ufffd\ufffd\ufffd\ufffd")") << "above U+10FFFF";
  EXPECT_EQ(parse_json(json_quote("/srv/\xff\xfe")).string, "/srv/\xef\xbf\xbd\xef\xbf\xbd");
}

// A socket listening at `path`. One that never accepts shows a connection
// as a readable listener.
UniqueFd listen_at(const std::filesystem::path& path, int type = SOCK_STREAM) {
  UniqueFd listener(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strcpy(address.sun_path, path.c_str());
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  EXPECT_EQ(::listen(listener.get(), 1), 0);
  return listener;
}

bool connection_pending(const UniqueFd& listener) {
  pollfd pfd{listener.get(), POLLIN, 0};
  return ::poll(&pfd, 1, 200) != 0;
}

// A QMP server that plays a script: for each line the client sends, the
// handler writes back whatever it wants, in as many pieces as it wants.
class ScriptedQmp {
 public:
  using Handler = std::function<void(int fd, const std::string& line)>;

  ScriptedQmp(std::string greeting_part1, std::string greeting_part2, Handler handler)
      : socket_(dir_ / "qmp.sock"), listener_(listen_at(socket_)) {
    thread_ = std::thread([this, greeting_part1, greeting_part2, handler] {
      int fd = ::accept(listener_.get(), nullptr, nullptr);
      if (fd < 0) return;
      UniqueFd connection(fd);
      send(fd, greeting_part1);
      std::this_thread::sleep_for(20ms);  // the client must cope with a partial greeting
      send(fd, greeting_part2);
      std::string buffer;
      char chunk[1024];
      for (;;) {
        ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n <= 0) return;
        buffer.append(chunk, static_cast<size_t>(n));
        size_t newline;
        while ((newline = buffer.find('\n')) != std::string::npos) {
          std::string line = buffer.substr(0, newline);
          buffer.erase(0, newline + 1);
          handler(fd, line);
        }
      }
    });
  }
  ~ScriptedQmp() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    thread_.join();
  }

  static void send(int fd, const std::string& text) { ASSERT_EQ(::write(fd, text.data(), text.size()), ssize_t(text.size())); }
  const std::filesystem::path& socket() const { return socket_; }

 private:
  testing::TempDir dir_{"vmwarden-qmp"};
  std::filesystem::path socket_;
  UniqueFd listener_;
  std::thread thread_;
};

std::string id_of(const std::string& line) {
  Json request = parse_json(line);
  return std::to_string(static_cast<int>(request.find("id")->number));
}

const char* kGreetingStart = R"({"QMP": {"version": {"qemu": {"micro": 0, "min)";
const char* kGreetingEnd = "or\": 2, \"major\": 7}}, \"capabilities\": [\"oob\"]}}\r\n";

TEST(QmpClient, MatchesRepliesAcrossEventsAndSplitReads) {
  ScriptedQmp server(kGreetingStart, kGreetingEnd, [](int fd, const std::string& line) {
    std::string id = id_of(line);
    if (line.find("qmp_capabilities") != std::string::npos) {
      ScriptedQmp::send(fd, "{\"return\": {}, \"id\": " + id + "}\r\n");
    } else if (line.find("query-status") != std::string::npos) {
      ScriptedQmp::send(fd, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"RESUME\"}\r\n{\"ret");
      std::this_thread::sleep_for(20ms);
      ScriptedQmp::send(fd, "urn\": {\"status\": \"running\", \"running\": true}, \"id\": " + id + "}\r\n");
    } else {
      ScriptedQmp::send(fd, "{\"id\": " + id +
                                ", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}}\r\n");
    }
  });
  QmpClient qmp = QmpClient::connect(server.socket(), in(5s));
  EXPECT_EQ(qmp.greeting().find("QMP")->find("version")->find("qemu")->find("major")->number, 7);
  Json status = qmp.execute("query-status", in(5s));
  EXPECT_EQ(status.string_member("status"), "running");
  ASSERT_EQ(qmp.events().size(), 1u);
  EXPECT_EQ(qmp.events()[0].string_member("event"), "RESUME");
  try {
    qmp.execute("nope", in(5s));
    FAIL() << "no QmpError";
  } catch (const QmpError& e) {
    EXPECT_EQ(e.error_class(), "CommandNotFound");
    EXPECT_THAT(e.what(), HasSubstr("has not been found"));
  }
}

TEST(QmpClient, GivesUpAtTheDeadline) {
  ScriptedQmp server(kGreetingStart, kGreetingEnd, [](int fd, const std::string& line) {
    if (line.find("qmp_capabilities") != std::string::npos)
      ScriptedQmp::send(fd, "{\"return\": {}, \"id\": " + id_of(line) + "}\n");
    // anything else: never answered
  });
  QmpClient qmp = QmpClient::connect(server.socket(), in(5s));
  auto start = std::chrono::steady_clock::now();
  try {
    qmp.execute("query-status", in(200ms));
    FAIL() << "no timeout";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code(), ETIMEDOUT);
  }
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 190ms);
  EXPECT_LT(waited, 3s);
}

// The warden (root) reads what a VMM a guest may have taken over writes:
// a reply that never ends is refused once 1 MiB is pending, and a flood of
// events keeps only the newest.
TEST(QmpClient, AReplyWithoutEndIsRefusedPastTheLimit) {
  ScriptedQmp server(kGreetingStart, kGreetingEnd, [](int fd, const std::string& line) {
    if (line.find("qmp_capabilities") != std::string::npos) {
      ScriptedQmp::send(fd, "{\"return\": {}, \"id\": " + id_of(line) + "}\n");
      return;
    }
    std::string chunk(64 * 1024, ' ');
    chunk.front() = '"';
    for (int i = 0; i < 64; ++i) {
      chunk.front() = i ? ' ' : '"';
      if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0) return;  // the client gave up
    }
  });
  QmpClient qmp = QmpClient::connect(server.socket(), in(5s));
  try {
    qmp.execute("query-status", in(10s));
    FAIL() << "read a reply of 4 MiB";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("more than 1048576 bytes unread from the VMM"));
  }
}

TEST(QmpClient, AFloodOfEventsKeepsTheNewestOnly) {
  ScriptedQmp server(kGreetingStart, kGreetingEnd, [](int fd, const std::string& line) {
    std::string text;
    if (line.find("query-status") != std::string::npos)
      for (int i = 0; i < 1000; ++i) text += fmt::format("{{\"event\": \"E{}\"}}\n", i);
    ScriptedQmp::send(fd, text + "{\"return\": {}, \"id\": " + id_of(line) + "}\n");
  });
  QmpClient qmp = QmpClient::connect(server.socket(), in(5s));
  qmp.execute("query-status", in(5s));
  ASSERT_EQ(qmp.events().size(), QmpClient::kMaxEvents);
  EXPECT_EQ(qmp.events().front().string_member("event"), fmt::format("E{}", 1000 - QmpClient::kMaxEvents));
  EXPECT_EQ(qmp.events().back().string_member("event"), "E999");
}

// The warden calls the client in its one event loop: events that keep
// coming must not keep a command past its deadline (the shutdown timer and
// the SIGKILL wait behind it). Past it, nothing more is read, however much
// is there to read.
TEST(QmpClient, AnEndlessFloodOfEventsEndsAtTheDeadline) {
  ScriptedQmp server(kGreetingStart, kGreetingEnd, [](int fd, const std::string& line) {
    if (line.find("qmp_capabilities") == std::string::npos) return;  // never answered
    // In large writes, so that the client always finds more to read; the
    // first with the reply, so that events are in the client's buffer
    // already when the next command is sent.
    std::string events;
    while (events.size() < 64 * 1024) events += "{\"event\": \"SPAM\"}\n";
    std::string reply = "{\"return\": {}, \"id\": " + id_of(line) + "}\n" + events;
    if (::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) return;
    auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until) {
      if (::send(fd, events.data(), events.size(), MSG_NOSIGNAL) < 0) return;  // the client gave up
    }
  });
  QmpClient qmp = QmpClient::connect(server.socket(), in(5s));
  std::this_thread::sleep_for(50ms);  // a socket full of events
  try {
    qmp.execute("quit", std::chrono::steady_clock::now() - 1ms);
    FAIL() << "no timeout";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code(), ETIMEDOUT);
  }
  EXPECT_TRUE(qmp.events().empty()) << "read " << qmp.events().size() << " events past the deadline";

  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(qmp.execute("quit", in(300ms)), SystemError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s) << "the flood held the client past its deadline";
}

TEST(QmpClient, RefusesASocketThatIsNotQmp) {
  ScriptedQmp server("{\"hello\": ", "1}\n", [](int, const std::string&) {});
  EXPECT_THROW(QmpClient::connect(server.socket(), in(5s)), std::runtime_error);
}

// The control socket lies in a directory the VM's UID owns: a socket served
// by another UID (the VMM's socket file, with another process listening on
// it) is not talked to at all.
TEST(QmpClient, TalksOnlyToASocketServedByTheExpectedUid) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (to give the socket file to another UID)";
  // Listening, never accepting: the connect completes in the backlog, and
  // nothing may be read or sent on it.
  testing::TempDir dir("vmwarden-qmp");
  std::filesystem::path socket = dir / "qmp.sock";
  UniqueFd listener = listen_at(socket);
  // The file is the VMM's (else it would be refused before connecting).
  ASSERT_EQ(::chown(socket.c_str(), ::getuid() + 1, -1), 0);
  auto start = std::chrono::steady_clock::now();
  try {
    QmpClient::connect(socket, in(5s), ::getuid() + 1);
    FAIL() << "talked to a socket of another UID";
  } catch (const PermanentError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr(fmt::format("is served by UID {}", ::getuid())));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "refused at once, not after waiting for a greeting";
}

TEST(QmpClient, TalksToASocketServedByTheExpectedUid) {
  ScriptedQmp server(kGreetingStart, kGreetingEnd, [](int fd, const std::string& line) {
    ScriptedQmp::send(fd, "{\"return\": {}, \"id\": " + id_of(line) + "}\r\n");
  });
  QmpClient client = QmpClient::connect(server.socket(), in(5s), ::getuid());
  client.execute("query-status", in(5s));
}

// The VMM owns the directory of its control socket and could put a symlink
// there, which connect() would follow: refused before connecting, even to
// a socket of the right UID.
TEST(UnixConnection, RefusesASymlinkWithoutConnecting) {
  testing::TempDir host("vmwarden-host"), vm("vmwarden-vm");
  UniqueFd listener = listen_at(host / "elsewhere.sock");
  std::filesystem::create_symlink(host / "elsewhere.sock", vm / "control.sock");
  try {
    UnixConnection::connect(vm / "control.sock", SOCK_STREAM, ::getuid());
    FAIL() << "connected through a symlink";
  } catch (const PermanentError& e) {
    EXPECT_THAT(e.what(), HasSubstr("control.sock is a symlink, not the VMM's socket"));
  }
  EXPECT_FALSE(connection_pending(listener)) << "the socket behind the symlink was connected to";
}

// Or a hard link to a socket of the host on the same filesystem (/run):
// refused by its owner, before connecting (SO_PEERCRED comes too late: the
// host's server has seen a connection from root by then).
TEST(UnixConnection, RefusesASocketOfAnotherUidWithoutConnecting) {
  testing::TempDir host("vmwarden-host"), vm("vmwarden-vm");
  UniqueFd listener = listen_at(host / "service.sock");
  std::filesystem::create_hard_link(host / "service.sock", vm / "control.sock");
  uid_t vmm_uid = ::getuid() + 1;
  try {
    UnixConnection::connect(vm / "control.sock", SOCK_STREAM, vmm_uid);
    FAIL() << "connected to a socket of another UID";
  } catch (const PermanentError& e) {
    EXPECT_THAT(e.what(), HasSubstr(fmt::format("control.sock is a socket owned by UID {}, not by the VMM's UID {}",
                                                ::getuid(), vmm_uid)));
  }
  EXPECT_FALSE(connection_pending(listener)) << "the hard-linked socket was connected to";
}

// A socket the warden bound for the VMM (QEMU's, cloud-hypervisor's) is
// the VMM's UID's file, listened on by the warden: served by that listener
// when it is named, and by nobody else.
TEST(UnixConnection, ASocketBoundForTheVmmIsServedByWhoBoundIt) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown)";
  testing::TempDir vm("vmwarden-vm");
  uid_t vmm_uid = 4242;
  UniqueFd listener = listen_at(vm / "control.sock");
  ASSERT_EQ(::chown((vm / "control.sock").c_str(), vmm_uid, vmm_uid), 0);
  // Each connection taken off the backlog, so that the next one is made.
  auto take = [&] { UniqueFd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK)); };
  EXPECT_NO_THROW(UnixConnection::connect(vm / "control.sock", SOCK_STREAM, vmm_uid, ::geteuid()));
  take();
  try {
    UnixConnection::connect(vm / "control.sock", SOCK_STREAM, vmm_uid);
    FAIL() << "talked to a socket served by another UID";
  } catch (const PermanentError& e) {
    EXPECT_THAT(e.what(), HasSubstr(fmt::format("served by UID {}, not by the VMM's UID {}", ::geteuid(), vmm_uid)));
  }
  take();
  EXPECT_THROW(UnixConnection::connect(vm / "control.sock", SOCK_STREAM, vmm_uid, ::geteuid() + 1), PermanentError);
}

TEST(UnixConnection, RefusesWhatIsNotASocket) {
  testing::TempDir vm("vmwarden-vm");
  testing::write_file(vm / "control.sock", "");
  try {
    UnixConnection::connect(vm / "control.sock", SOCK_STREAM, ::getuid());
    FAIL() << "connected to a regular file";
  } catch (const PermanentError& e) {
    EXPECT_THAT(e.what(), HasSubstr("control.sock is a regular file, not the VMM's socket"));
  }
}

// The normal case, a socket of the VMM's UID at the path itself, works for
// both socket types the VMMs use (QMP and the cloud-hypervisor API:
// SOCK_STREAM; crosvm: SOCK_SEQPACKET), and the connection reaches it.
TEST(UnixConnection, ConnectsToTheVmmsOwnSocket) {
  testing::TempDir vm("vmwarden-vm");
  UniqueFd stream = listen_at(vm / "control.sock");
  UnixConnection connection = UnixConnection::connect(vm / "control.sock", SOCK_STREAM, ::getuid());
  EXPECT_EQ(connection.path(), vm / "control.sock");
  EXPECT_TRUE(connection_pending(stream));

  UniqueFd seqpacket = listen_at(vm / "crosvm.sock", SOCK_SEQPACKET);
  EXPECT_NO_THROW(UnixConnection::connect(vm / "crosvm.sock", SOCK_SEQPACKET, ::getuid()));
  EXPECT_TRUE(connection_pending(seqpacket));
}

// What every client of a VMM's socket reads through (QMP, the
// cloud-hypervisor API): past its deadline, nothing more is read, however
// much is waiting.
TEST(UnixConnection, ReadsNothingPastItsDeadline) {
  testing::TempDir vm("vmwarden-vm");
  UniqueFd listener = listen_at(vm / "control.sock");
  UnixConnection connection = UnixConnection::connect(vm / "control.sock", SOCK_STREAM, ::getuid());
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(server);
  std::string waiting(4096, 'x');
  ASSERT_EQ(::send(server.get(), waiting.data(), waiting.size(), MSG_NOSIGNAL), ssize_t(waiting.size()));
  std::string buffer;
  try {
    connection.read_some(buffer, std::chrono::steady_clock::now() - 1ms);
    FAIL() << "read past the deadline";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code(), ETIMEDOUT);
  }
  EXPECT_TRUE(buffer.empty());
  EXPECT_TRUE(connection.read_some(buffer, in(5s)));
  EXPECT_FALSE(buffer.empty()) << "the data was there to read";
}

TEST(UnixConnection, AMissingSocketIsStillENOENT) {
  testing::TempDir vm("vmwarden-vm");
  try {
    UnixConnection::connect(vm / "control.sock", SOCK_STREAM, ::getuid());
    FAIL() << "connected to nothing";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code(), ENOENT) << "a VMM not started yet is waited for";
    EXPECT_THAT(e.what(), HasSubstr((vm / "control.sock").native()));
  }
}

TEST(QmpClient, MissingSocketIsASystemError) {
  testing::TempDir dir;
  try {
    QmpClient::connect(dir / "absent.sock", in(1s));
    FAIL() << "connected to nothing";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code(), ENOENT);
  }
}

}  // namespace
}  // namespace vmwarden::vm
