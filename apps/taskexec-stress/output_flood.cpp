// output-flood: a task writes a known pattern to its stdout (a file, or a
// FIFO we read) at full speed; every byte must arrive, in order.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "stress.hpp"
#include "taskexec/task_executor.hpp"

namespace stress {

namespace {

// Checks the pattern (each 8-byte word is its index, little endian) as
// pieces of it come, in any sizes.
struct pattern_checker {
  std::uint64_t offset = 0;
  std::uint64_t first_bad = UINT64_MAX;
  unsigned char partial[8] = {};
  void feed(const unsigned char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i, ++offset) {
      partial[offset % 8] = p[i];
      if (offset % 8 == 7 && first_bad == UINT64_MAX) {
        std::uint64_t w = 0;
        for (int b = 7; b >= 0; --b)
          w = w << 8 | partial[b];
        if (w != offset / 8)
          first_bad = offset - 7;
      }
    }
  }
  bool ok(std::uint64_t expected) const { return offset == expected && first_bad == UINT64_MAX; }
  std::string describe(std::uint64_t expected) const {
    if (first_bad != UINT64_MAX)
      return "wrong bytes at offset " + std::to_string(first_bad);
    return std::to_string(offset) + " of " + std::to_string(expected) + " bytes";
  }
};

asio::awaitable<void> drain(asio::io_context& io, int fd, pattern_checker& check) {
  asio::posix::stream_descriptor d(io, fd);
  std::vector<unsigned char> buf(1 << 16);
  for (;;) {
    auto [ec, n] =
        co_await d.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    check.feed(buf.data(), n);
    if (ec)
      co_return;
  }
}

pattern_checker check_file(const std::string& path) {
  pattern_checker c;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return c;
  std::vector<unsigned char> buf(1 << 20);
  ssize_t n;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0)
    c.feed(buf.data(), static_cast<std::size_t>(n));
  ::close(fd);
  return c;
}

}  // namespace

asio::awaitable<void> run_output_flood(context& ctx, const options& opt, scenario_report& rep) {
  const auto mib = opt.num("mib");
  const bool fifo = opt.flag("fifo");
  const bool embedded = opt.flag("embedded");
  const auto rounds = opt.num("rounds");
  const auto bytes = static_cast<std::uint64_t>(mib) << 20;
  rep.summary = std::to_string(rounds) + " x " + std::to_string(mib) + " MiB of a pattern to " +
                (fifo ? "a FIFO we read" : "a file") + ", " +
                (embedded ? "embedded" : "through a daemon");

  std::optional<daemon_handle> d;
  if (!embedded) {
    auto started = co_await start_daemon(ctx, ctx.fresh_path("output", ".sock"));
    if (!started)
      throw std::runtime_error("daemon: " + started.error().message);
    d = std::move(*started);
  }

  // One round: the task writes to `path` (given by path to the executor);
  // the baseline round hands the executor a descriptor we opened.
  auto round = [&](bool baseline, latency_recorder& rec) -> asio::awaitable<std::string> {
    auto path = ctx.fresh_path("flood", fifo ? ".fifo" : ".out");
    int read_fd = -1, own_fd = -1, keeper = -1;
    if (fifo) {
      if (::mkfifo(path.c_str(), 0600) != 0)
        co_return "mkfifo " + path + ": " + std::strerror(errno);
      read_fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      // Until the task has it open, a reader alone would see EOF: hold a
      // writer of our own until the launch is done.
      keeper = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (baseline)
        own_fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    } else if (baseline) {
      own_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    }
    auto cmd = ctx.helper("write-pattern", {std::to_string(bytes)});
    if (baseline)
      cmd.stdout_fd = own_fd;
    else
      cmd.stdout_path = path;
    pattern_checker check;
    std::string failure;
    // Timed: from the launch until the writer has exited and (FIFO) every
    // byte is read; not the daemon's replacement.
    auto t0 = clock_type::now();
    auto writer_end = t0, reader_end = t0;
    co_await run_all(2, [&](std::size_t i) -> asio::awaitable<void> {
      if (i == 1) {
        if (fifo)
          co_await drain(ctx.io, read_fd, check);
        reader_end = clock_type::now();
        co_return;
      }
      taskexec::result<taskexec::process_state> state = taskexec::process_state{};
      if (baseline || embedded) {
        taskexec::task_executor t(ctx.reaper);
        auto l = co_await t.launch(cmd);
        if (own_fd >= 0)
          ::close(own_fd);
        if (keeper >= 0)
          ::close(keeper);
        if (l)
          state = co_await t.wait();
        else
          state = l.error();
        writer_end = clock_type::now();
      } else {
        auto l = co_await d->client->launch(cmd);
        if (keeper >= 0)
          ::close(keeper);
        if (l)
          state = co_await d->client->wait();
        else
          state = l.error();
        writer_end = clock_type::now();
        // A daemon runs one task: the next round needs a new daemon.
        auto gone = co_await destroy_daemon(*d, std::chrono::seconds(20));
        auto next = co_await start_daemon(ctx, ctx.fresh_path("output", ".sock"));
        if (!gone || !next)
          failure = "daemon: " + (gone ? next.error().message : gone.error().message);
        else
          d = std::move(*next);
      }
      if (!state || state->exit_code != 0)
        failure = state ? "the writer exited " + std::to_string(state->exit_code)
                        : "the writer: " + state.error().message;
    });
    rec.record(static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::max(writer_end, reader_end) - t0)
            .count()));
    if (!fifo)
      check = check_file(path);
    ::unlink(path.c_str());
    if (failure.empty() && !check.ok(bytes))
      failure = "lost or wrong output: " + check.describe(bytes);
    co_return failure;
  };

  std::uint64_t bad = 0;
  std::string first_failure;
  long long done = 0;
  co_await with_progress(
      ctx,
      [&] { return "output-flood: round " + std::to_string(done) + "/" + std::to_string(rounds); },
      [&]() -> asio::awaitable<void> {
        for (long long r = 0; r < rounds; ++r, ++done)
          for (bool baseline : {true, false}) {
            auto f =
                co_await round(baseline, rep.latency(baseline ? "raw (our descriptor)" : "write"));
            if (!f.empty() && !baseline && bad++ == 0)
              first_failure = f;
            if (!f.empty() && baseline)
              throw std::runtime_error("the baseline round failed: " + f);
          }
      });
  if (d)
    if (auto r = co_await destroy_daemon(*d, std::chrono::seconds(20)); !r)
      rep.add_check("the daemon destroyed and gone", false, r.error().message);

  auto mibps = [&](const latency_recorder& l) {
    return l.quantile(0.5) ? static_cast<double>(mib) / (static_cast<double>(l.quantile(0.5)) / 1e9)
                           : 0;
  };
  double ours = mibps(rep.latency("write")), raw = mibps(rep.latency("raw (our descriptor)"));
  rep.figures["bytes_per_round"] = bytes;
  rep.figures["rounds"] = rounds;
  rep.figures["mib_per_second"] = ours;
  rep.figures["baseline_mib_per_second"] = raw;
  rep.figures["bad_rounds"] = bad;
  rep.compare("throughput (median round)", ours, "MiB/s",
              "the same writer on a descriptor we opened", raw, "", true);
  rep.add_check("every byte arrived, in order, in every round", bad == 0,
                bad ? std::to_string(bad) + " rounds bad, the first: " + first_failure
                    : std::to_string(rounds) + " x " + std::to_string(bytes) + " bytes verified");
}

}  // namespace stress
