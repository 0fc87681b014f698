#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/test/unit_test.hpp>

#include "taskexec/remote_executor.hpp"
#include "taskexec/rpc/framer.hpp"
#include "taskexec/rpc/journal.hpp"
#include "taskexec/rpc/message.hpp"
#include "taskexec/rpc/params.hpp"

#include <random>
#include <set>

using namespace taskexec;
using namespace taskexec::rpc;
namespace json = boost::json;

namespace {
std::vector<std::string> drain(ndjson_framer& f) {
  std::vector<std::string> out;
  while (auto m = f.next())
    out.push_back(*m);
  return out;
}
const invalid& as_invalid(const item& i) {
  BOOST_REQUIRE(std::holds_alternative<invalid>(i));
  return std::get<invalid>(i);
}
const request& as_request(const item& i) {
  BOOST_REQUIRE(std::holds_alternative<request>(i));
  return std::get<request>(i);
}
}  // namespace

BOOST_AUTO_TEST_SUITE(ndjson)

BOOST_AUTO_TEST_CASE(splits_lines_across_reads) {
  ndjson_framer f(1024);
  f.feed("{\"a\":1}\n{\"b\"");
  BOOST_TEST(drain(f) == std::vector<std::string>{"{\"a\":1}"}, boost::test_tools::per_element());
  f.feed(":2}\r\n\n  \n{\"c\":3}\n");
  BOOST_TEST(drain(f) == (std::vector<std::string>{"{\"b\":2}", "{\"c\":3}"}),
             boost::test_tools::per_element());
  BOOST_TEST(f.buffered() == 0u);
  BOOST_TEST(!f.overflowed());
}

BOOST_AUTO_TEST_CASE(byte_by_byte) {
  ndjson_framer f(64);
  const std::string text = "{\"x\":[1,2,3]}\n{\"y\":\"z\"}\n";
  std::vector<std::string> got;
  for (char c : text) {
    f.feed(std::string_view(&c, 1));
    for (auto& m : drain(f))
      got.push_back(m);
  }
  BOOST_TEST(got == (std::vector<std::string>{"{\"x\":[1,2,3]}", "{\"y\":\"z\"}"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(limit_is_exact_and_enforced_before_the_newline) {
  ndjson_framer f(10);
  f.feed(std::string(10, 'a') + "\n");
  BOOST_TEST(drain(f) == std::vector<std::string>{std::string(10, 'a')},
             boost::test_tools::per_element());
  f.feed(std::string(11, 'b') + "\n");
  BOOST_TEST(drain(f).empty());
  BOOST_TEST(f.overflowed());

  ndjson_framer crlf(10);  // exactly the limit, "\r" and "\n" in separate reads
  crlf.feed(std::string(10, 'd') + "\r");
  BOOST_TEST(drain(crlf).empty());
  crlf.feed("\n");
  BOOST_TEST(drain(crlf) == std::vector<std::string>{std::string(10, 'd')},
             boost::test_tools::per_element());
  BOOST_TEST(!crlf.overflowed());

  ndjson_framer g(10);
  g.feed(std::string(6, 'c'));
  BOOST_TEST(drain(g).empty());
  g.feed(std::string(6, 'c'));  // 12 bytes, no newline yet: over already
  BOOST_TEST(g.overflowed());
  BOOST_TEST(g.buffered() == 0u);  // nothing held once over
  g.feed("\n{}\n");
  BOOST_TEST(drain(g).empty());  // stays closed
}

// next_view() gives what next() would, from the framer's own buffer: each
// view stays valid until the next call, across lines, blank lines and a
// message split between reads.
BOOST_AUTO_TEST_CASE(views_are_the_messages_next_would_copy) {
  ndjson_framer f(1024);
  f.feed("{\"a\":1}\n\n{\"b\":2}\r\n{\"c\"");
  auto a = f.next_view();
  BOOST_REQUIRE(a.has_value());
  BOOST_TEST(*a == "{\"a\":1}");
  auto b = f.next();  // a copy, as before
  BOOST_REQUIRE(b.has_value());
  BOOST_TEST(*b == "{\"b\":2}");
  BOOST_TEST(!f.next_view().has_value());
  f.feed(":3}\n");
  auto c = f.next_view();
  BOOST_REQUIRE(c.has_value());
  BOOST_TEST(*c == "{\"c\":3}");
  BOOST_TEST(!f.next_view().has_value());
  BOOST_TEST(f.buffered() == 0u);
}

// Once every message is taken, a buffer up to keep_bytes stays for the next
// read (a stream drains it at every read); one grown past it by a burst is
// given back then; release() gives back the rest over 64 KiB, but not
// while a message is still arriving.
BOOST_AUTO_TEST_CASE(keeps_up_to_keep_bytes_between_reads_and_release_gives_it_back) {
  constexpr std::size_t keep = 256 * 1024;
  ndjson_framer f(1024 * 1024, keep);
  const std::string line = std::string(100 * 1024, 'a') + "\n";
  f.feed(line);
  f.feed(line);  // 200 KiB buffered: more than the default 64 KiB, under keep
  BOOST_TEST(drain(f).size() == 2u);
  BOOST_TEST(f.buffered() == 0u);
  const std::size_t kept = f.capacity();
  BOOST_TEST(kept >= 2 * line.size());
  BOOST_TEST(kept <= keep);
  f.feed(line);  // the next read needs no new buffer
  BOOST_TEST(f.capacity() == kept);
  BOOST_TEST(drain(f).size() == 1u);

  f.feed(std::string(300 * 1024, 'b') + "\n");  // a burst past keep
  BOOST_TEST(f.capacity() > keep);
  BOOST_TEST(drain(f).size() == 1u);
  BOOST_TEST(f.capacity() < 64u);  // given back at the drain

  f.feed(line);
  f.feed("{\"partial\":");  // a message still arriving: release keeps it
  BOOST_TEST(drain(f).size() == 1u);
  f.release();
  BOOST_TEST(f.capacity() >= line.size());
  f.feed("1}\n");
  BOOST_TEST(drain(f) == std::vector<std::string>{"{\"partial\":1}"},
             boost::test_tools::per_element());
  BOOST_TEST(f.capacity() >= line.size());  // kept: under keep
  f.release();
  BOOST_TEST(f.capacity() < 64u);
  f.feed("{}\n");  // and it works on after a release
  BOOST_TEST(drain(f) == std::vector<std::string>{"{}"}, boost::test_tools::per_element());
  f.feed(std::string(1000, 'c') + "\n");
  BOOST_TEST(drain(f).size() == 1u);
  const std::size_t small = f.capacity();
  BOOST_TEST(small >= 1000u);
  f.release();  // 64 KiB or less stays, as the default keeps it
  BOOST_TEST(f.capacity() == small);

  ndjson_framer d(1024 * 1024);  // the default keeps 64 KiB
  d.feed(line);
  BOOST_TEST(drain(d).size() == 1u);
  BOOST_TEST(d.capacity() < 64u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(jsonrpc)

// Params are moved out of the parsed document (ExecStreaming.Input's data
// is not copied): every member of a batch, and a single request, keeps its
// own, whole.
BOOST_AUTO_TEST_CASE(params_arrive_whole_in_batches_and_alone) {
  const std::string data(100000, 'Q');
  const std::string one =
      R"({"jsonrpc":"2.0","id":7,"method":"ExecStreaming.Input","params":{"session":"s1","data":")" +
      data + R"("}})";
  auto single = parse_message(one);
  BOOST_REQUIRE_EQUAL(single.items.size(), 1u);
  const auto& r = as_request(single.items[0]);
  BOOST_TEST(r.params.at("data").as_string() == data);
  BOOST_TEST(r.params.at("session").as_string() == "s1");

  auto batch =
      parse_message(R"([{"jsonrpc":"2.0","id":1,"method":"Signal","params":{"signal":"SIGHUP"}},
                                 {"jsonrpc":"2.0","id":2,"method":"Signal","params":["x",2]}])");
  BOOST_REQUIRE_EQUAL(batch.items.size(), 2u);
  BOOST_TEST(as_request(batch.items[0]).params.at("signal").as_string() == "SIGHUP");
  const auto& arr = as_request(batch.items[1]).params.as_array();
  BOOST_REQUIRE_EQUAL(arr.size(), 2u);
  BOOST_TEST(arr[0].as_string() == "x");
  BOOST_TEST(arr[1].as_int64() == 2);
}

BOOST_AUTO_TEST_CASE(valid_request_and_notification) {
  auto m = parse_message(R"({"jsonrpc":"2.0","id":7,"method":"Version"})");
  BOOST_TEST(!m.batch);
  const auto& r = as_request(m.items.at(0));
  BOOST_TEST(r.method == "Version");
  BOOST_TEST(r.id.has_value());
  BOOST_TEST(json::serialize(*r.id) == "7");
  BOOST_TEST(r.params.is_null());

  auto n = parse_message(R"({"jsonrpc":"2.0","method":"Signal","params":{"signal":10}})");
  const auto& nr = as_request(n.items.at(0));
  BOOST_TEST(!nr.id.has_value());
  BOOST_TEST(nr.params.at("signal").as_int64() == 10);
}

BOOST_AUTO_TEST_CASE(parse_errors_have_null_id) {
  const std::vector<std::string> bad_texts = {"{", "nul", "{\"a\":\"\xff\"}",
                                              std::string(100, '[') + std::string(100, ']')};
  for (const auto& bad : bad_texts) {
    auto m = parse_message(bad);
    const auto& e = as_invalid(m.items.at(0));
    BOOST_TEST((e.error.error_code == code::parse_error), bad);
    BOOST_TEST(e.id.is_null());
  }
}

BOOST_AUTO_TEST_CASE(invalid_requests_keep_their_id) {
  struct bad_case {
    std::string text;
    std::string message;
    std::string id;
  };
  const bad_case cases[] = {
      {R"({"id":1,"method":"Version"})", "jsonrpc must be \"2.0\"", "1"},
      {R"({"jsonrpc":"1.0","id":"a","method":"Version"})", "jsonrpc must be \"2.0\"", "\"a\""},
      {R"({"jsonrpc":"2.0","id":2,"method":5})", "method must be a string", "2"},
      {R"({"jsonrpc":"2.0","id":3,"method":"Wait","params":"x"})",
       "params must be an object or an array", "3"},
      {R"({"jsonrpc":"2.0","id":4,"method":"Wait","extra":1})", "unknown member \"extra\"", "4"},
      {R"({"jsonrpc":"2.0","id":{"x":1},"method":"Wait"})",
       "id must be a string, an integer or null", "null"},
      {R"([])", "empty batch", "null"},
      {R"(5)", "a request must be an object", "null"},
  };
  for (const auto& c : cases) {
    auto m = parse_message(c.text);
    const auto& e = as_invalid(m.items.at(0));
    BOOST_TEST((e.error.error_code == code::invalid_request), c.text);
    BOOST_TEST(e.error.message == c.message, c.text);
    BOOST_TEST(json::serialize(e.id) == c.id, c.text);
  }
}

BOOST_AUTO_TEST_CASE(batches_validate_each_member) {
  auto m = parse_message(R"([{"jsonrpc":"2.0","id":1,"method":"Version"}, 1,
                            {"jsonrpc":"2.0","method":"Signal","params":{"signal":0}}])");
  BOOST_TEST(m.batch);
  BOOST_REQUIRE_EQUAL(m.items.size(), 3u);
  BOOST_TEST(as_request(m.items[0]).method == "Version");
  BOOST_TEST((as_invalid(m.items[1]).error.error_code == code::invalid_request));
  BOOST_TEST(!as_request(m.items[2]).id.has_value());
}

// A key twice in one object: Boost.JSON would keep the last value, so
// {"method":"Version","method":"Destroy"} would pass as a Destroy.
BOOST_AUTO_TEST_CASE(duplicate_keys_are_refused_at_any_depth) {
  {
    auto m = parse_message(R"({"jsonrpc":"2.0","id":1,"method":"Version","method":"Destroy"})");
    const auto& e = as_invalid(m.items.at(0));
    BOOST_TEST((e.error.error_code == code::invalid_request));
    BOOST_TEST(e.error.message == "duplicate key \"method\"");
    BOOST_TEST(json::serialize(e.id) == "1");
  }
  {
    // The duplicate is the id: which one would be a guess.
    auto m = parse_message(R"({"jsonrpc":"2.0","id":1,"id":2,"method":"Version"})");
    const auto& e = as_invalid(m.items.at(0));
    BOOST_TEST(e.error.message == "duplicate key \"id\"");
    BOOST_TEST(e.id.is_null());
  }
  {
    // In params: -32602 naming the field by path, the id kept.
    auto m = parse_message(
        R"({"jsonrpc":"2.0","id":"a","method":"Launch","params":{"cmd":"/bin/true","cmd":"/bin/sh"}})");
    const auto& e = as_invalid(m.items.at(0));
    BOOST_TEST((e.error.error_code == code::invalid_params));
    BOOST_TEST(e.error.message == "duplicate key \"cmd\" in params");
    BOOST_TEST(e.error.data.at("field").as_string() == "cmd");
    BOOST_TEST(json::serialize(e.id) == "\"a\"");
  }
  {
    auto m = parse_message(
        R"({"jsonrpc":"2.0","id":2,"method":"Launch","params":{"cmd":"x","mounts":[{},{"readonly":true,"task_path":"/a","readonly":false}]}})");
    const auto& e = as_invalid(m.items.at(0));
    BOOST_TEST((e.error.error_code == code::invalid_params));
    BOOST_TEST(e.error.data.at("field").as_string() == "mounts[1].readonly");
  }
  {
    // Keys are compared as decoded: "a" and "\u0061" are one key.
    auto m = parse_message(
        R"({"jsonrpc":"2.0","id":3,"method":"UpdateResources","params":{"resources":{"cpu_shares":1,"\u0063pu_shares":2}}})");
    const auto& e = as_invalid(m.items.at(0));
    BOOST_TEST((e.error.error_code == code::invalid_params));
    BOOST_TEST(e.error.data.at("field").as_string() == "resources.cpu_shares");
    auto top =
        parse_message(R"({"jsonrpc":"2.0","id":4,"\u006dethod":"Version","method":"Destroy"})");
    BOOST_TEST(as_invalid(top.items.at(0)).error.message == "duplicate key \"method\"");
  }
  {
    // In a batch only that member is refused; the others run.
    auto m = parse_message(
        R"([{"jsonrpc":"2.0","id":1,"method":"Version"},)"
        R"({"jsonrpc":"2.0","id":2,"method":"Signal","params":{"signal":1,"signal":9}},)"
        R"({"jsonrpc":"2.0","id":3,"method":"Version","jsonrpc":"2.0"}])");
    BOOST_REQUIRE_EQUAL(m.items.size(), 3u);
    BOOST_TEST(as_request(m.items[0]).method == "Version");
    const auto& second = as_invalid(m.items[1]);
    BOOST_TEST((second.error.error_code == code::invalid_params));
    BOOST_TEST(second.error.data.at("field").as_string() == "signal");
    BOOST_TEST(json::serialize(second.id) == "2");
    const auto& third = as_invalid(m.items[2]);
    BOOST_TEST((third.error.error_code == code::invalid_request));
    BOOST_TEST(third.error.message == "duplicate key \"jsonrpc\"");
    BOOST_TEST(json::serialize(third.id) == "3");
  }
  {
    // A huge key is named by its first 64 bytes only.
    const std::string k(100000, 'k');
    auto m = parse_message(R"({"jsonrpc":"2.0","id":5,"method":"Version","params":{")" + k +
                           R"(":1,")" + k + R"(":2}})");
    const auto& e = as_invalid(m.items.at(0));
    BOOST_TEST(e.error.data.at("field").as_string() == std::string(64, 'k') + "...");
  }
  // Equal values at different places, or in different objects, are no
  // duplicates.
  auto ok = parse_message(
      R"({"jsonrpc":"2.0","id":6,"method":"Launch","params":{"cmd":"x","mounts":[{"task_path":"/a"},{"task_path":"/b"}]}})");
  BOOST_TEST(as_request(ok.items.at(0)).method == "Launch");
}

// A property: whatever request a random generator builds, the same request
// with one key written twice (at any depth, escaped or not) is refused with
// the code its place calls for, and without the duplicate it parses.
BOOST_AUTO_TEST_CASE(property_any_duplicate_key_is_refused) {
  std::mt19937 rng(20261127);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  // A random object of depth up to 3 with keys k0..k4; `dup_at` counts down
  // the objects written, and the one where it reaches 0 writes a key twice.
  struct gen {
    std::mt19937& rng;
    int dup_at;
    bool escaped;
    std::string dup_key;
    std::string path;
    int pick(int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); }
    std::string key_text(const std::string& k, bool escape) {
      // "\u006b" is "k": the same key, spelled differently.
      return escape ? "\"\\u006b" + k.substr(1) + "\"" : "\"" + k + "\"";
    }
    std::string value(int depth, const std::string& at) {
      switch (depth > 0 ? pick(4) : pick(2)) {
        case 0:
          return std::to_string(pick(1000));
        case 1:
          return "\"s" + std::to_string(pick(10)) + "\"";
        case 2:
          return object(depth - 1, at);
        default: {
          std::string out = "[";
          const int n = pick(3);
          for (int i = 0; i < n; ++i)
            out += (i ? "," : "") + value(depth - 1, at + "[" + std::to_string(i) + "]");
          return out + "]";
        }
      }
    }
    std::string object(int depth, const std::string& at) {
      const bool here = dup_at-- == 0;
      const int n = 1 + pick(4);
      std::string out = "{";
      for (int i = 0; i < n; ++i) {
        const std::string k = "k" + std::to_string(i);
        out +=
            (i ? "," : "") + key_text(k, false) + ":" + value(depth, at.empty() ? k : at + "." + k);
      }
      if (here) {
        dup_key = "k" + std::to_string(pick(n));
        path = at.empty() ? dup_key : at + "." + dup_key;
        out += "," + key_text(dup_key, escaped) + ":null";
      }
      return out + "}";
    }
  };
  for (int round = 0; round < 2000; ++round) {
    gen g{rng, pick(4), pick(2) == 1, {}, {}};
    std::string params = g.object(2, "");
    if (g.dup_key.empty())
      continue;  // fewer objects than dup_at: nothing duplicated this round
    const bool batch = pick(2) == 1;
    std::string text = R"({"jsonrpc":"2.0","id":7,"method":"Launch","params":)" + params + "}";
    if (batch)
      text = R"([{"jsonrpc":"2.0","id":1,"method":"Version"},)" + text + "]";
    auto m = parse_message(text);
    BOOST_REQUIRE_EQUAL(m.items.size(), batch ? 2u : 1u);
    const auto& e = as_invalid(m.items.back());
    BOOST_TEST((e.error.error_code == code::invalid_params), text);
    BOOST_TEST(e.error.data.at("field").as_string() == g.path, text);
    BOOST_TEST(json::serialize(e.id) == "7", text);
    if (batch)
      BOOST_TEST(as_request(m.items.front()).method == "Version");
  }
}

BOOST_AUTO_TEST_CASE(responses_are_compact_json_rpc) {
  BOOST_TEST(json::serialize(make_result(3, json::object{{"version", "2.0.0"}})) ==
             R"({"jsonrpc":"2.0","id":3,"result":{"version":"2.0.0"}})");
  rpc_error e{code::invalid_params, "cmd must be a string", {{"field", "cmd"}}};
  BOOST_TEST(
      json::serialize(make_error("x", e)) ==
      R"({"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":"cmd must be a string","data":{"field":"cmd"}}})");
  BOOST_TEST(json::serialize(make_error(nullptr, {code::parse_error, "parse error", {}})) ==
             R"({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}})");
}

BOOST_AUTO_TEST_CASE(domain_errors_map_in_one_place) {
  using op = task_operation;
  auto map = [](errc c, op o = op::signal) {
    return to_rpc_error(make_error(c, "m"), o).error_code;
  };
  BOOST_TEST((map(errc::not_launched) == code::task_not_launched));
  BOOST_TEST((map(errc::already_launched, op::launch) == code::already_launched));
  BOOST_TEST((map(errc::task_exited) == code::task_not_running));
  BOOST_TEST((map(errc::task_destroyed) == code::task_not_running));
  BOOST_TEST((map(errc::binary_not_found, op::launch) == code::launch_failed));
  BOOST_TEST((map(errc::user_not_found, op::launch) == code::launch_failed));
  BOOST_TEST((map(errc::launch_failed, op::launch) == code::launch_failed));
  BOOST_TEST((map(errc::invalid_argument) == code::invalid_params));
  BOOST_TEST((map(errc::unsupported, op::launch) == code::unsupported));
  BOOST_TEST((map(errc::shutdown_incomplete, op::shutdown) == code::timed_out));

  auto os = to_rpc_error(make_system_error(EACCES, "open stdout_path \"/x\""), op::launch);
  BOOST_TEST((os.error_code == code::launch_failed));
  BOOST_TEST(os.message == "open stdout_path \"/x\": Permission denied");
  BOOST_TEST(os.data.at("errno").as_int64() == EACCES);
  BOOST_TEST((to_rpc_error(make_system_error(EPERM, "kill"), op::signal).error_code ==
              code::internal_error));
  // An Exec (or ExecStreaming.Start) whose command cannot be started for
  // an OS reason is a launch failure too: descriptors running out is
  // -32004 with errno 24, as for Launch.
  auto exec_os = to_rpc_error(make_system_error(EMFILE, "pipe2"), op::exec);
  BOOST_TEST((exec_os.error_code == code::launch_failed));
  BOOST_TEST(exec_os.data.at("errno").as_int64() == EMFILE);

  auto field =
      to_rpc_error(decode_error{"resources.cpu_shares", "resources.cpu_shares must be an integer"});
  BOOST_TEST((field.error_code == code::invalid_params));
  BOOST_TEST(field.data.at("field").as_string() == "resources.cpu_shares");
}

// The daemon's fast path for ExecStreaming.Input takes exactly the form our
// client writes, and what it takes is what the parser and the params
// decoder make of the same line; any other line is left to the parser.
BOOST_AUTO_TEST_CASE(fast_exec_input_agrees_with_the_parser_or_declines) {
  const auto line = [](std::string id, std::string session, std::string data) {
    return R"({"jsonrpc":"2.0","id":)" + id +
           R"(,"method":"ExecStreaming.Input","params":{"session":")" + session + R"(","data":")" +
           data + R"("}})";
  };
  const std::vector<std::string> taken = {
      line("1", "exec-1", "aGVsbG8="),
      line("0", "exec-12", ""),
      line("999999999999999999", "a.B_c-9", "AAECAwQF"),
      line("42", std::string(256, 's'), "/w=="),
  };
  for (const auto& l : taken) {
    BOOST_TEST_CONTEXT(l.substr(0, 120)) {
      auto fast = parse_exec_input(l);
      BOOST_REQUIRE(fast.has_value());
      auto m = parse_message(l);
      BOOST_REQUIRE(!m.batch);
      BOOST_REQUIRE(m.items.size() == 1u);
      const auto& r = as_request(m.items.front());
      BOOST_TEST(*fast->id == *r.id);
      BOOST_TEST(fast->id->is_int64());
      BOOST_TEST(r.id->is_int64());
      BOOST_TEST(fast->method == r.method);
      auto slow = decode_exec_input(r.params);
      BOOST_REQUIRE(slow.has_value());
      BOOST_REQUIRE(fast->input_data.has_value());
      BOOST_TEST(*fast->input_data == *slow->data);
      auto quick = decode_exec_input(fast->params);
      BOOST_REQUIRE(quick.has_value());
      BOOST_TEST(quick->session == slow->session);
      BOOST_TEST(!quick->data.has_value());
    }
  }
  BOOST_TEST(*parse_exec_input(taken[0])->input_data == "hello");
  BOOST_TEST(parse_exec_input(taken[2])->input_data->size() == 6u);

  const std::vector<std::string> declined = {
      line("01", "exec-1", "aGk="),                    // a leading zero: not JSON
      line("-1", "exec-1", "aGk="),                    // negative
      line("1000000000000000000", "exec-1", "aGk="),   // 19 digits
      line("9999999999999999999", "exec-1", "aGk="),   // 19, past an int64
      line("99999999999999999999", "exec-1", "aGk="),  // 20
      line("\"a\"", "exec-1", "aGk="),                 // a string id
      line("1", "", "aGk="),                           // no session
      line("1", std::string(257, 's'), "aGk="),        // session too long
      line("1", "exec 1", "aGk="),                     // a space in it
      line("1", "exec\\u002d1", "aGk="),               // an escape in it
      line("1", "exec-1", "aGk"),                      // not base64 (no padding)
      line("1", "exec-1", "aG\\u006b="),               // an escape in the data
      line("1", "exec-1", "a\\/k="),                   // and another
      line("1", "exec-1", "aGl="),                     // bits under the padding
      line("1", "exec-1", "aGk=") + "\r",              // a '\r' the framer left
      R"({"jsonrpc":"2.0","id":1,"method":"ExecStreaming.Input","params":{"session":"s","data":"}})",
      line("1", "exec-1", "aGk=\",\"close\":true"),  // another member after
      line("1", "exec-1", "aGk=") + " ",             // white space after
      " " + line("1", "exec-1", "aGk="),             // and before
      R"({"jsonrpc":"2.0","method":"ExecStreaming.Input","params":{"session":"exec-1","data":"aGk="}})",
      R"({"jsonrpc":"2.0","id":1,"method":"ExecStreaming.Input","params":{"data":"aGk=","session":"exec-1"}})",
      R"({"jsonrpc":"2.0","id":1,"method":"ExecStreaming.Cancel","params":{"session":"exec-1","data":"aGk="}})",
      R"({"jsonrpc":"2.0","id":1, "method":"ExecStreaming.Input","params":{"session":"exec-1","data":"aGk="}})",
  };
  for (const auto& l : declined)
    BOOST_TEST(!parse_exec_input(l).has_value(), l);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(journal)

BOOST_AUTO_TEST_CASE(events_in_order_from_since) {
  event_journal j(10);
  BOOST_TEST(json::serialize(j.since(0)) == R"({"events":[],"next":1,"more":false,"dropped":0})");
  auto t = std::chrono::system_clock::time_point(std::chrono::seconds(2));
  BOOST_TEST(j.append("launched", {{"pid", 42}}, t) == 1u);
  BOOST_TEST(j.append("exited", {{"exit_code", 3}}, t) == 2u);
  BOOST_TEST(
      json::serialize(j.since(2)) ==
      R"({"events":[{"seq":2,"time_unix_nano":2000000000,"type":"exited","exit_code":3}],"next":3,"more":false,"dropped":0})");
  BOOST_TEST(j.since(0).at("events").as_array().size() == 2u);
  BOOST_TEST(j.since(3).at("events").as_array().empty());
  BOOST_TEST(j.since(99).at("next").as_uint64() == 3u);
}

BOOST_AUTO_TEST_CASE(the_bound_drops_the_oldest_and_says_so) {
  event_journal j(3);
  for (int i = 0; i < 5; ++i)
    j.append("signalled", {{"signal", i}});
  BOOST_TEST(j.size() == 3u);
  auto all = j.since(1);
  BOOST_TEST(all.at("dropped").as_uint64() == 2u);
  const auto& ev = all.at("events").as_array();
  BOOST_REQUIRE_EQUAL(ev.size(), 3u);
  BOOST_TEST(ev[0].at("seq").as_uint64() == 3u);
  BOOST_TEST(ev[2].at("seq").as_uint64() == 5u);
  BOOST_TEST(j.since(4).at("dropped").as_uint64() == 0u);
  BOOST_TEST(j.since(4).at("events").as_array().size() == 2u);
}

BOOST_AUTO_TEST_CASE(launched_oom_and_exited_are_never_evicted) {
  event_journal j(8);
  j.append("launched", {{"pid", 42}});
  for (int i = 0; i < 1280; ++i)
    j.append("shutdown", {{"signal", "SIGTERM"}, {"grace_period_ms", 0}, {"ok", true}});
  j.append("oom", {{"pid", 42}});
  j.append("exited", {{"state", json::object{{"pid", 42}}}});
  for (int i = 0; i < 1280; ++i)
    j.append("signalled", {{"signal", 1}});
  BOOST_TEST(j.size() == 8u);
  BOOST_TEST(j.evicted() == 2563u - 8u);
  auto page = j.since(0, 8);
  const auto& ev = page.at("events").as_array();
  BOOST_REQUIRE_EQUAL(ev.size(), 8u);
  BOOST_TEST(ev[0].at("type").as_string() == "launched");
  BOOST_TEST(ev[0].at("seq").as_uint64() == 1u);
  BOOST_TEST(ev[1].at("type").as_string() == "oom");
  BOOST_TEST(ev[2].at("type").as_string() == "exited");
  BOOST_TEST(ev[3].at("type").as_string() == "signalled");
  BOOST_TEST(page.at("dropped").as_uint64() == 2563u - 8u);
}

BOOST_AUTO_TEST_CASE(strings_are_cut_and_bytes_are_bounded) {
  event_journal j(1024, 4096);
  const std::string big(1 << 20, 'x');
  j.append("shutdown", {{"signal", "SIGTERM"}, {"error", big}});
  const auto first = j.since(0);
  const auto& e = first.at("events").as_array().at(0);
  BOOST_TEST(e.at("error").as_string() ==
             std::string(event_journal::max_string_bytes, 'x') + "...");
  // Never inside a UTF-8 sequence: "é" is two bytes, the cut falls between.
  std::string accents;
  for (int i = 0; i < 200; ++i)
    accents += "\xc3\xa9";
  j.append("shutdown", {{"error", "x" + accents}});
  const auto second = j.since(2);
  const auto& cut = second.at("events").as_array().at(0).at("error").as_string();
  BOOST_TEST(cut == "x" + accents.substr(0, 254) + "...");
  // 4096 bytes hold a handful of these events, not all 100.
  for (int i = 0; i < 100; ++i)
    j.append("signalled", {{"signal", i}, {"pad", std::string(200, 'p')}});
  BOOST_TEST(j.bytes() <= 4096u);
  BOOST_TEST(j.size() < 20u);
  BOOST_TEST(json::serialize(j.since(0)).size() < 4096u + 100u);
}

BOOST_AUTO_TEST_CASE(pages_return_every_event_exactly_once) {
  event_journal j(100);
  j.append("launched", {{"pid", 1}});
  for (int i = 0; i < 300; ++i)
    j.append("signalled", {{"signal", i % 30 + 1}});
  j.append("exited", {{"state", json::object{}}});
  // 100 kept of 302: launched and exited (pinned) and the last 98 signalled.
  std::set<std::uint64_t> seen;
  std::uint64_t since = 0, covered = 0;
  bool more = true;
  int pages = 0;
  while (more) {
    auto page = j.since(since, 7);
    const auto& ev = page.at("events").as_array();
    BOOST_TEST(ev.size() <= 7u);
    for (const auto& e : ev)
      BOOST_TEST(seen.insert(e.at("seq").as_uint64()).second);  // never twice
    covered += ev.size() + page.at("dropped").as_uint64();
    more = page.at("more").as_bool();
    since = page.at("next").as_uint64();
    BOOST_REQUIRE(++pages < 100);
  }
  BOOST_TEST(seen.size() == 100u);
  BOOST_TEST(since == j.next_seq());
  BOOST_TEST(covered == 302u);  // every seq from 1 on: returned or counted dropped
  BOOST_TEST(seen.contains(1u));
  BOOST_TEST(seen.contains(302u));
  // A page stops at page_bytes of events, whatever the limit.
  event_journal big(1024, 1 << 20);
  for (int i = 0; i < 1000; ++i)
    big.append("signalled", {{"pad", std::string(250, 'p')}});
  auto page = big.since(0, event_journal::max_page_events);
  // 64 KiB of events, plus the commas between them and the page around them.
  BOOST_TEST(json::serialize(page).size() <= event_journal::page_bytes + 1024);
  BOOST_TEST(page.at("more").as_bool());
}

// A property: random events of random sizes, appended in any order; after
// each append the measured bytes stay within the budget, the count within
// its bound, and launched and exited (once recorded) are still there.
BOOST_AUTO_TEST_CASE(property_the_budget_holds_and_pinned_events_stay) {
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    const std::size_t max_events = 1 + rng() % 300;
    const std::size_t max_bytes = 2048 + rng() % 65536;
    event_journal j(max_events, max_bytes);
    std::uint64_t launched = 0, exited = 0;
    const int n = static_cast<int>(rng() % 3000);
    const int launch_at = static_cast<int>(rng() % 50), exit_at = launch_at + 1 + rng() % 2000;
    for (int i = 0; i < n; ++i) {
      if (i == launch_at) {
        launched = j.append("launched", {{"pid", 1}});
      } else if (i == exit_at) {
        exited = j.append("exited", {{"state", json::object{{"pid", 1}, {"exit_code", 0}}}});
      } else {
        static const char* types[] = {"signalled", "shutdown"};
        j.append(types[rng() % 2], {{"error", std::string(rng() % 5000, 'e')}});
      }
      BOOST_REQUIRE(j.bytes() <= max_bytes);
      BOOST_REQUIRE(j.size() <= max_events);
      if (launched != 0 && max_events >= 2) {
        auto first = j.since(launched, 1).at("events").as_array();
        BOOST_REQUIRE(!first.empty());
        BOOST_REQUIRE(first[0].at("seq").as_uint64() == launched);
      }
      if (exited != 0 && max_events >= 2) {
        auto e = j.since(exited, 1).at("events").as_array();
        BOOST_REQUIRE(!e.empty());
        BOOST_REQUIRE(e[0].at("seq").as_uint64() == exited);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(shutdown_and_events_params) {
  // An unknown signal is refused by the decoder, its name quoted only in part.
  auto bad = decode_shutdown(json::parse(R"({"signal":"SIGNOPE"})"));
  BOOST_REQUIRE(!bad);
  BOOST_TEST(bad.error().message == "unknown signal \"SIGNOPE\"");
  BOOST_TEST(bad.error().data.at("field").as_string() == "signal");
  json::object huge{{"signal", std::string(4 << 20, 'S')}};
  auto big = decode_shutdown(huge);
  BOOST_REQUIRE(!big);
  BOOST_TEST(big.error().message ==
             "unknown signal \"" + std::string(64, 'S') + "\"... (4194304 bytes)");
  auto sig = decode_signal(huge);
  BOOST_REQUIRE(!sig);
  BOOST_TEST(sig.error().message.size() < 120u);
  // What is kept is the canonical name.
  BOOST_TEST(decode_shutdown(json::parse(R"({"signal":"term"})"))->signal == "SIGTERM");
  BOOST_TEST(decode_shutdown(json::parse("{}"))->signal == "SIGINT");
  BOOST_TEST(decode_events(json::parse(R"({"since":3,"limit":1024})"))->limit == 1024u);
  BOOST_TEST(decode_events(json::parse("{}"))->limit == 256u);
  for (const char* l : {R"({"limit":0})", R"({"limit":1025})", R"({"limit":"5"})"}) {
    auto e = decode_events(json::parse(l));
    BOOST_REQUIRE(!e);
    BOOST_TEST(e.error().message == "limit must be an integer from 1 to 1024");
  }
}

BOOST_AUTO_TEST_CASE(the_client_maps_every_error_code_back) {
  // Each taskexec code comes back as the errc that the daemon maps to it.
  for (int c :
       {-32001, -32002, -32003, -32004, -32005, -32006, -32007, -32008, -32009, -32010, -32602}) {
    const errc e = from_rpc_error(c);
    BOOST_TEST(
        static_cast<int>(to_rpc_error(make_error(e, "m"), task_operation::launch).error_code) == c);
  }
  BOOST_TEST((from_rpc_error(-32603) == errc::internal));
  BOOST_TEST((from_rpc_error(-32601) == errc::unsupported));
  BOOST_TEST((from_rpc_error(-32700) == errc::protocol_error));
  BOOST_TEST((from_rpc_error(-32600) == errc::protocol_error));
  BOOST_TEST((from_rpc_error(12345) == errc::protocol_error));
}

BOOST_AUTO_TEST_CASE(reattach_config_round_trips_and_is_strict) {
  reattach_config c{"/run/t/1.sock", 4242, 18446744073709551615ull, ""};
  BOOST_TEST(to_json(c) ==
             R"({"socket":"/run/t/1.sock","pid":4242,"pid_start_time":18446744073709551615})");
  auto back = parse_reattach_config(to_json(c));
  BOOST_REQUIRE(back);
  BOOST_TEST((*back == c));
  // The exit file (taskexecd --exit-dir) is optional, written when set.
  c.exit_file = "/run/taskexec/exits/web-1.json";
  BOOST_TEST(to_json(c) ==
             R"({"socket":"/run/t/1.sock","pid":4242,"pid_start_time":18446744073709551615,)"
             R"("exit_file":"/run/taskexec/exits/web-1.json"})");
  back = parse_reattach_config(to_json(c));
  BOOST_REQUIRE(back);
  BOOST_TEST((*back == c));
  BOOST_TEST(
      handshake_exit_file(R"({"protocol":"taskexec-jsonrpc","pid":7,"exit_file":"/x/t.json"})") ==
      "/x/t.json");
  BOOST_TEST(handshake_exit_file(R"({"protocol":"taskexec-jsonrpc","pid":7})") == "");
  BOOST_TEST(handshake_exit_file(R"({"exit_file":"relative.json"})") == "");
  const std::pair<const char*, const char*> bad[] = {
      {"[]", "reattach config is not a JSON object"},
      {"{", "reattach config is not a JSON object"},
      {R"({"pid":1,"pid_start_time":2})", "reattach config: socket must be a non-empty string"},
      {R"({"socket":"s","pid":0,"pid_start_time":2})",
       "reattach config: pid must be a positive integer"},
      {R"({"socket":"s","pid":"1","pid_start_time":2})",
       "reattach config: pid must be a positive integer"},
      {R"({"socket":"s","pid":1,"pid_start_time":-2})",
       "reattach config: pid_start_time must be a non-negative integer"},
      {R"({"socket":"s","pid":1,"pid_start_time":2,"extra":0})",
       "reattach config: unknown field \"extra\""},
      {R"({"socket":"s","pid":1,"pid_start_time":2,"exit_file":"x.json"})",
       "reattach config: exit_file must be an absolute path"},
      {R"({"socket":"s","pid":1,"pid_start_time":2,"exit_file":1})",
       "reattach config: exit_file must be an absolute path"},
  };
  for (const auto& [text, message] : bad) {
    auto r = parse_reattach_config(text);
    BOOST_REQUIRE(!r);
    BOOST_TEST((r.error().code == make_error_code(errc::invalid_argument)));
    BOOST_TEST(r.error().message == message);
  }
}

BOOST_AUTO_TEST_SUITE_END()
