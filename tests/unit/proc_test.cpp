#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "taskexec/detail/proc.hpp"

using namespace taskexec::detail;

namespace {
std::string stat_line(int pid, std::string comm, char state, int ppid, int pgrp, int session,
                      unsigned long long start) {
  // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime ...
  return std::to_string(pid) + " (" + comm + ") " + state + " " + std::to_string(ppid) + " " +
         std::to_string(pgrp) + " " + std::to_string(session) +
         " 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 " + std::to_string(start) +
         " 2301952 225 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
}
std::vector<int> pids(const std::vector<proc_stat>& v) {
  std::vector<int> out;
  for (const auto& p : v)
    out.push_back(p.pid);
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(proc_parsing)

BOOST_AUTO_TEST_CASE(parses_fields) {
  auto st = parse_proc_stat(stat_line(42, "sleep", 'S', 7, 40, 30, 123456));
  BOOST_REQUIRE(st);
  BOOST_TEST(st->pid == 42);
  BOOST_TEST(st->comm == "sleep");
  BOOST_TEST(st->state == 'S');
  BOOST_TEST(st->ppid == 7);
  BOOST_TEST(st->pgrp == 40);
  BOOST_TEST(st->session == 30);
  BOOST_TEST(st->start_ticks == 123456u);
}

BOOST_AUTO_TEST_CASE(comm_with_spaces_and_parens) {
  auto st = parse_proc_stat(stat_line(9, "a) (b c) Z 1", 'R', 1, 9, 9, 77));
  BOOST_REQUIRE(st);
  BOOST_TEST(st->comm == "a) (b c) Z 1");
  BOOST_TEST(st->state == 'R');
  BOOST_TEST(st->start_ticks == 77u);
}

BOOST_AUTO_TEST_CASE(garbage_is_rejected) {
  for (std::string bad : {"", "12", "12 (x", "x (y) S 1 2 3", "12 (x) S 1 2",
                          "12 (x) SS 1 2 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"}) {
    BOOST_TEST(!parse_proc_stat(bad).has_value(), bad);
  }
}

BOOST_AUTO_TEST_CASE(reads_own_stat) {
  auto st = read_proc_stat(::getpid());
  BOOST_REQUIRE(st);
  BOOST_TEST(st->pid == ::getpid());
  BOOST_TEST(st->ppid == ::getppid());
  BOOST_TEST(st->start_ticks <= boot_ticks_now());
}

BOOST_AUTO_TEST_CASE(members_follow_session_group_tree_and_adoption) {
  // 1 init; 100 us (the executor); task 200 (session 200).
  const std::vector<proc_stat> table = {
      *parse_proc_stat(stat_line(1, "init", 'S', 0, 1, 1, 1)),
      *parse_proc_stat(stat_line(100, "executor", 'S', 1, 100, 100, 10)),
      *parse_proc_stat(stat_line(200, "sh", 'S', 100, 200, 200, 50)),
      *parse_proc_stat(stat_line(201, "sleep", 'S', 200, 200, 200, 51)),   // group member
      *parse_proc_stat(stat_line(202, "setsid", 'S', 200, 202, 202, 52)),  // left the session
      *parse_proc_stat(stat_line(203, "child", 'S', 202, 202, 202, 53)),   // its child
      *parse_proc_stat(
          stat_line(204, "daemon", 'S', 100, 204, 204, 54)),  // orphan re-parented to us
      *parse_proc_stat(
          stat_line(205, "stranger", 'S', 100, 205, 205, 55)),  // another child of ours
      *parse_proc_stat(
          stat_line(206, "old", 'S', 1, 200, 200, 5)),  // in the session but older: pid reuse
      *parse_proc_stat(stat_line(207, "zombie", 'Z', 201, 200, 200, 56)),
  };
  auto m = task_members(table, 200, 50, std::nullopt, 100, {204});
  BOOST_TEST(pids(m) == (std::vector<int>{200, 201, 202, 203, 204, 207}),
             boost::test_tools::per_element());
  // Without adoption the daemon is not claimed.
  BOOST_TEST(pids(task_members(table, 200, 50, std::nullopt, 100, {})) ==
                 (std::vector<int>{200, 201, 202, 203, 207}),
             boost::test_tools::per_element());
  // After the main process is gone, its session and group still identify members.
  std::vector<proc_stat> after(table.begin(), table.end());
  after.erase(after.begin() + 2);
  BOOST_TEST(pids(task_members(after, 200, 50, 100, 100, {})) == (std::vector<int>{201, 207}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_recycled_main_pid_seeds_nothing) {
  // The task (pid 200, started at 50) was reaped; pid 200 now belongs to an
  // unrelated session leader started later. Its session must not be swept.
  const std::vector<proc_stat> table = {
      *parse_proc_stat(stat_line(100, "executor", 'S', 1, 100, 100, 10)),
      *parse_proc_stat(stat_line(200, "unrelated", 'S', 1, 200, 200, 90)),
      *parse_proc_stat(stat_line(201, "its-child", 'S', 200, 200, 200, 91)),
      *parse_proc_stat(stat_line(204, "daemon", 'S', 100, 204, 204, 60)),
  };
  BOOST_TEST(task_members(table, 200, 50, 80, 100, {}).empty());
  // Even when it started in the same clock tick as the old task.
  BOOST_TEST(task_members(table, 200, 90, 80, 100, {}).empty());
  // Adopted orphans still count: they are re-parented to us, not found by pid.
  BOOST_TEST(pids(task_members(table, 200, 50, 80, 100, {204})) == (std::vector<int>{204}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_recycled_and_released_pid_leaves_a_strangers_session) {
  // The task (pid 200) was reaped at tick 80; a stranger got pid 200, started
  // `sleep` (session 200) and exited: nobody holds 200, but session 200 is
  // not the task's any more. Processes of the task's own session that started
  // before the reap are still seeded.
  const std::vector<proc_stat> table = {
      *parse_proc_stat(stat_line(100, "executor", 'S', 1, 100, 100, 10)),
      *parse_proc_stat(stat_line(300, "strangers-sleep", 'S', 1, 200, 200, 95)),
      *parse_proc_stat(stat_line(301, "tasks-own", 'S', 1, 200, 200, 60)),
  };
  BOOST_TEST(pids(task_members(table, 200, 50, 80, 100, {})) == (std::vector<int>{301}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(proc_files_read_the_same_process_again_and_follow_the_pid) {
  proc_files files(2);
  const int me = ::getpid();
  auto fresh = read_proc_stat(me);
  auto kept = files.stat(me);
  BOOST_REQUIRE(fresh);
  BOOST_REQUIRE(kept);
  BOOST_TEST(kept->pid == me);
  BOOST_TEST(kept->start_ticks == fresh->start_ticks);
  BOOST_TEST(kept->ppid == fresh->ppid);
  BOOST_TEST(files.open_count() == 1u);
  // Read again through the open file: still this process.
  BOOST_TEST(files.stat(me)->start_ticks == fresh->start_ticks);
  BOOST_TEST(files.status_kib(me, "VmRSS").value_or(0) > 0u);
  BOOST_TEST(!files.status_kib(me, "NoSuchKey").has_value());
  BOOST_TEST(files.open_count() == 1u);

  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  auto c = files.stat(child);
  BOOST_REQUIRE(c);
  BOOST_TEST(c->pid == child);
  BOOST_TEST(c->ppid == me);
  BOOST_TEST(files.open_count() == 2u);
  // Children lists: ours holds the child; the child's is empty, which is
  // content, not a process gone.
  auto kids = files.children(child);
  BOOST_REQUIRE(kids);
  BOOST_TEST(kids->empty());
  auto mine = files.children(me);
  BOOST_REQUIRE(mine);
  const auto listed = parse_children_list(*mine);
  BOOST_TEST((std::find(listed.begin(), listed.end(), child) != listed.end()));
  BOOST_TEST(files.open_count() == 2u);
  // Full (2): a third process is read, not kept.
  proc_files one(1);
  BOOST_TEST(one.stat(me).has_value());
  BOOST_TEST(one.stat(child).has_value());
  BOOST_TEST(one.open_count() == 1u);

  ::kill(child, SIGKILL);
  int status = 0;
  BOOST_REQUIRE(::waitpid(child, &status, 0) == child);
  // Reaped: the open file fails and the pid has no process now. Its
  // children file (which would read empty, not fail) went with it.
  BOOST_TEST(!files.stat(child).has_value());
  BOOST_TEST(!files.children(child).has_value());
  BOOST_TEST(!files.status_kib(child, "VmSwap").has_value());
  BOOST_TEST(files.open_count() == 1u);
  BOOST_TEST(!one.stat(child).has_value());

  // Moved: the files go with the object.
  proc_files moved = std::move(files);
  BOOST_TEST(moved.open_count() == 1u);
  BOOST_TEST(files.open_count() == 0u);  // NOLINT(bugprone-use-after-move): checked empty
  moved.keep_only({me});
  BOOST_TEST(moved.open_count() == 1u);
  moved.keep_only({});
  BOOST_TEST(moved.open_count() == 0u);
  BOOST_TEST(moved.stat(me)->pid == me);
}

BOOST_AUTO_TEST_SUITE_END()
