// Exit files: how a task ended, written by taskexecd (--exit-dir DIR) to
// DIR/<task id>.json the moment the task is reaped, as conmon's --exit-dir,
// so the exit status outlives the daemon (a SIGKILL, a crash, a reboot of
// the agent). reattach_to_executor reads it when the daemon is gone.
//
// The file (compact JSON, one line, at most max_bytes):
//   {"task_id":"web-1","daemon_pid":N,"daemon_start_time":N,
//    "state":{"pid":N,"exit_code":N,"signal":N,"time_unix_nano":N,"oom_killed":B}}
// daemon_pid and daemon_start_time (field 22 of /proc/<pid>/stat) name the
// daemon that wrote it, as a reattach_config does: a reader holding a config
// takes the file only when both match.
//
// Paths: the directory is resolved one component at a time with O_NOFOLLOW
// (no symlink is followed, the last one included; "." and ".." are
// refused): the daemon runs as root and writes there. The file is written
// atomically: a temporary file in the same directory (O_EXCL), fsync,
// rename over DIR/<task id>.json, fsync of the directory. Reading opens the
// file the same way, checks it is a regular file and reads at most
// max_bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "taskexec/error.hpp"
#include "taskexec/types.hpp"

namespace taskexec::rpc {

struct exit_record {
  std::string task_id;
  int daemon_pid = 0;
  std::uint64_t daemon_start_time = 0;
  process_state state;

  friend bool operator==(const exit_record&, const exit_record&) = default;
};

/// Whether `task_id` can name an exit file: 1 to 128 bytes of
/// [A-Za-z0-9._@:-], not starting with '.'.
bool valid_exit_file_id(std::string_view task_id) noexcept;

/// The record as the file holds it (without a trailing newline).
std::string to_json(const exit_record& r);
/// Strict: every field required, nothing else; errc::invalid_argument
/// naming what is wrong.
result<exit_record> parse_exit_record(std::string_view text);

/// An open exit directory: the daemon opens it at start-up (a bad path fails
/// the start, not the task's end) and writes through the descriptor.
class exit_dir {
 public:
  static constexpr std::size_t max_bytes = 4096;

  /// Open `path` (absolute), creating missing directories (mode 0755)
  /// without following any symlink. Errors name the component.
  static result<exit_dir> open(const std::string& path);
  exit_dir(exit_dir&&) noexcept;
  exit_dir& operator=(exit_dir&&) noexcept;
  exit_dir(const exit_dir&) = delete;
  exit_dir& operator=(const exit_dir&) = delete;
  ~exit_dir();

  /// Write DIR/<r.task_id>.json atomically (mode 0644). Blocking: two
  /// fsyncs. errc::invalid_argument for an id that is no file name.
  result<void> write(const exit_record& r) const;
  /// The path of `task_id`'s file: DIR/<task_id>.json.
  std::string file_for(std::string_view task_id) const;
  const std::string& path() const noexcept { return path_; }

 private:
  exit_dir(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

/// Read an exit file (absolute path; no symlink followed on the way; a
/// regular file of at most exit_dir::max_bytes). The system error ENOENT
/// when there is none.
result<exit_record> read_exit_file(const std::string& path);

}  // namespace taskexec::rpc
