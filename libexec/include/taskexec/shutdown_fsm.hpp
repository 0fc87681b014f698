// The shutdown escalation as a pure state machine (the shape of Boost.Redis's
// run_fsm): it decides the next action, task_executor carries it out and
// reports back. No I/O and no clock: deadlines are handled by the driver,
// which reports `deadline_passed`.
//
// Sequence: [signal, wait up to grace] -> SIGKILL the task, wait for its exit
// -> sweep (kill the process group, the session, and every descendant that
// left them) until a sweep finds nothing -> done.
#pragma once

#include <chrono>
#include <string>

namespace taskexec {

class shutdown_fsm {
 public:
  enum class action_type {
    send_signal,  ///< send `signal` to the task's main process
    wait_exit,    ///< wait for the main process to exit, for at most `wait`
    kill_task,    ///< SIGKILL the main process
    sweep,        ///< find every remaining process of the task and SIGKILL it
    wait_sweep,   ///< wait for the next reaped child, then sweep again
    done,         ///< finished; `failed` says whether something survived
  };
  enum class event {
    started,           ///< first call
    step_done,         ///< the last action was carried out
    task_exited,       ///< the main process is gone (reaped)
    wait_timed_out,    ///< a wait_exit ran for its full duration
    sweep_found_none,  ///< the sweep found no process left
    sweep_found_some,  ///< the sweep found and killed processes
    deadline_passed,   ///< the whole shutdown bound is spent
  };
  struct action {
    action_type type = action_type::done;
    int signal = 0;
    std::chrono::milliseconds wait{0};
    bool failed = false;
    std::string reason;  ///< for done+failed: what went wrong
  };

  /// `signo` is sent first when grace > 0; `task_exited` says whether the
  /// main process is already gone when the shutdown starts.
  shutdown_fsm(int signo, std::chrono::milliseconds grace, bool task_exited) noexcept
      : signal_(signo), grace_(grace), exited_(task_exited) {}

  action resume(event ev);

 private:
  enum class phase {
    start,
    signalled,
    waiting_grace,
    killed,
    waiting_kill,
    sweeping,
    sweep_wait,
    done
  };
  int signal_;
  std::chrono::milliseconds grace_;
  bool exited_;
  phase phase_ = phase::start;
};

}  // namespace taskexec
