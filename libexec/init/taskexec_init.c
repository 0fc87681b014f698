/* taskexec-init: PID 1 of a container task's private PID namespace.
 *
 * The container strategy runs it (from a sealed memfd, so the task's root
 * needs no copy of it) after the namespaces, the root, the user and the
 * capabilities are in place; it then starts the task as its only child:
 *
 *   taskexec-init [-t] <exe inside the root> <argv0> [args...]     (env: the task's)
 *   -t:   stdin is a terminal: the task gets a session of its own with it as
 *         the controlling terminal (init has none), instead of a process
 *         group of its own.
 *   fd 3: the launch report pipe. A failed execve of the task is written
 *         there as {int errno; char step[56]}, which the executor reads as
 *         the launch's failure; EOF (the task's exec closed its copy) means
 *         the task runs.
 *   fd 4: the status pipe. When the task is reaped, its raw wait status
 *         (int) is written there before init exits, so the executor reports
 *         the task's own exit code or signal.
 *
 * As PID 1 it reaps every orphan of the namespace, and forwards every signal
 * it receives (all but SIGCHLD; SIGKILL and SIGSTOP cannot be caught and act
 * on init itself, which takes the whole namespace down) to the task. It exits
 * as soon as the task does: the kernel then kills what is left inside.
 *
 * The same image is the executor's watchdog (taskexec_executor_options::watchdog):
 *
 *   taskexec-init -w <cgroup to kill> [<cgroup to remove>...]
 *   fd 3: the read end of a pipe whose only write end the executor holds.
 *
 * It blocks every signal and waits for EOF on fd 3: the executor closed it
 * (the task is torn down) or died (SIGKILL, a crash). Then it kills every
 * process left in the cgroup (cgroup.kill, or freeze / SIGKILL / thaw until
 * cgroup.procs is empty), removes the cgroups named and exits. So a task's
 * whole tree, grandchildren that left its session included, ends with the
 * executor.
 *
 * Freestanding: no libc, a few raw system calls, a few KiB of memory. */
#include <asm/unistd.h>

#define SIG_BLOCK 0
#define SIG_SETMASK 2
#define SIGCHLD 17
#define WNOHANG 1
#define F_SETFD 2
#define FD_CLOEXEC 1
#define PR_SET_NAME 15
#define TIOCSCTTY 0x540E
#define REPORT_FD 3
#define STATUS_FD 4
#define WATCH_FD 3
#define O_RDONLY 0
#define O_WRONLY 1
#define O_NOFOLLOW 0400000
#define O_CLOEXEC 02000000
#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
#define SIGKILL 9
#define EINTR 4
#define EBUSY 16

#if defined(__x86_64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  long ret;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
__asm__(
    ".text\n"
    ".global _start\n"
    "_start:\n"
    "  xor %rbp, %rbp\n"
    "  mov %rsp, %rdi\n"
    "  and $-16, %rsp\n"
    "  call start_c\n"
    "  hlt\n");
#elif defined(__aarch64__)
static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc 0"
                   : "+r"(x0)
                   : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                   : "memory");
  return x0;
}
__asm__(
    ".text\n"
    ".global _start\n"
    "_start:\n"
    "  mov x29, #0\n"
    "  mov x30, #0\n"
    "  mov x0, sp\n"
    "  and x1, x0, #-16\n"
    "  mov sp, x1\n"
    "  bl start_c\n"
    "  brk #0\n");
#else
#error "taskexec-init: add this architecture's system call convention"
#endif

#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

struct report {
  int error;
  char step[56];
};

static void __attribute__((noreturn)) quit(int code) {
  for (;;)
    sys3(__NR_exit_group, code, 0, 0);
}

static void __attribute__((noreturn)) fail(long neg_errno, const char* step) {
  struct report r;
  unsigned i;
  r.error = (int)-neg_errno;
  for (i = 0; i < sizeof r.step; ++i)
    r.step[i] = 0;
  for (i = 0; step[i] && i + 1 < sizeof r.step; ++i)
    r.step[i] = step[i];
  sys3(__NR_write, REPORT_FD, &r, sizeof r);
  quit(127);
}


/* ---- the watchdog (-w) ---- */

static unsigned text_length(const char* s) {
  unsigned n = 0;
  while (s[n])
    ++n;
  return n;
}

/* dir + "/" + name into out (PATH_BUF bytes); 0 when it does not fit. */
#define PATH_BUF 4096
static int join_path(char* out, const char* dir, const char* name) {
  unsigned d = text_length(dir), n = text_length(name), i;
  if (d + 1 + n + 1 > PATH_BUF)
    return 0;
  for (i = 0; i < d; ++i)
    out[i] = dir[i];
  out[d] = '/';
  for (i = 0; i < n; ++i)
    out[d + 1 + i] = name[i];
  out[d + 1 + n] = 0;
  return 1;
}

/* Write `value` to dir/name; 0 on success, else -errno. */
static long write_to(const char* dir, const char* name, const char* value) {
  char path[PATH_BUF];
  long fd, r;
  if (!join_path(path, dir, name))
    return -36; /* ENAMETOOLONG */
  fd = sys4(__NR_openat, AT_FDCWD, path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0);
  if (fd < 0)
    return fd;
  r = sys3(__NR_write, fd, value, text_length(value));
  sys3(__NR_close, fd, 0, 0);
  return r < 0 ? r : 0;
}

/* SIGKILL every pid in dir/cgroup.procs (when `kill` is set); returns how
 * many pids were listed, or -errno when the file cannot be read. */
static long each_member(const char* dir, int kill) {
  char path[PATH_BUF];
  static char buf[4096];
  long fd, n, count = 0, pid = 0;
  int digits = 0;
  if (!join_path(path, dir, "cgroup.procs"))
    return -36;
  fd = sys4(__NR_openat, AT_FDCWD, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
  if (fd < 0)
    return fd;
  for (;;) {
    long i;
    n = sys3(__NR_read, fd, buf, sizeof buf);
    if (n == -EINTR)
      continue;
    if (n <= 0)
      break;
    for (i = 0; i < n; ++i) {
      char c = buf[i];
      if (c >= '0' && c <= '9') {
        pid = pid * 10 + (c - '0');
        ++digits;
      } else {
        if (digits && pid > 0) {
          ++count;
          if (kill)
            sys3(__NR_kill, pid, SIGKILL, 0);
        }
        pid = 0;
        digits = 0;
      }
    }
  }
  if (digits && pid > 0) {
    ++count;
    if (kill)
      sys3(__NR_kill, pid, SIGKILL, 0);
  }
  sys3(__NR_close, fd, 0, 0);
  return count;
}

static void pause_ms(long ms) {
  long ts[2];
  ts[0] = ms / 1000;
  ts[1] = (ms % 1000) * 1000000L;
  sys3(__NR_nanosleep, ts, 0, 0);
}

static void __attribute__((noreturn)) watchdog(int argc, char** argv) {
  const char* dir = argv[0];
  char byte[64];
  int i, round;
  /* Nothing of the executor's but the pipe: a descriptor it left open (its
   * listening socket) must not outlive it here. */
  if (sys3(__NR_close_range, WATCH_FD + 1, ~0U, 0) != 0) {
    for (i = WATCH_FD + 1; i < 4096; ++i)
      sys3(__NR_close, i, 0, 0);
  }
  /* Wait for EOF: the executor closed its end, or died. Bytes are ignored. */
  for (;;) {
    long n = sys3(__NR_read, WATCH_FD, byte, sizeof byte);
    if (n == 0 || (n < 0 && n != -EINTR))
      break;
  }
  sys3(__NR_close, WATCH_FD, 0, 0);
  /* cgroup.kill (v2, Linux 5.14+) kills the tree, forks racing it included;
   * otherwise freeze (v2 cgroup.freeze, or a v1 freezer cgroup), SIGKILL what
   * is listed, thaw, until nothing is left. Bounded: 20 s. */
  if (write_to(dir, "cgroup.kill", "1") == 0) {
    for (round = 0; round < 2000 && each_member(dir, 0) > 0; ++round)
      pause_ms(10);
  } else {
    int v2 = write_to(dir, "cgroup.freeze", "1") == 0;
    if (!v2)
      write_to(dir, "freezer.state", "FROZEN");
    for (round = 0; round < 2000; ++round) {
      long left = each_member(dir, 1);
      write_to(dir, v2 ? "cgroup.freeze" : "freezer.state", v2 ? "0" : "THAWED");
      if (left <= 0)
        break;
      pause_ms(10);
      write_to(dir, v2 ? "cgroup.freeze" : "freezer.state", v2 ? "1" : "FROZEN");
    }
  }
  /* Remove the cgroups (a dying process keeps one busy for a moment). */
  for (i = 1; i < argc; ++i) {
    for (round = 0; round < 200; ++round) {
      long r = sys3(__NR_unlinkat, AT_FDCWD, argv[i], AT_REMOVEDIR);
      if (r != -EBUSY)
        break;
      pause_ms(10);
    }
  }
  quit(0);
}

void __attribute__((noreturn, used)) start_c(long* sp) {
  int argc = (int)sp[0];
  char** argv = (char**)(sp + 1);
  char** envp = argv + argc + 1;
  unsigned long all = ~0UL, none = 0;
  long pid;
  int tty = 0;

  /* Every signal waits for sigtimedwait below. */
  sys4(__NR_rt_sigprocmask, SIG_BLOCK, &all, 0, sizeof all);
  sys6(__NR_prctl, PR_SET_NAME, (long)"taskexec-init", 0, 0, 0, 0);
  if (argc > 2 && argv[1][0] == '-' && argv[1][1] == 'w' && argv[1][2] == 0) {
    sys6(__NR_prctl, PR_SET_NAME, (long)"taskexec-watch", 0, 0, 0, 0);
    watchdog(argc - 2, argv + 2);
  }
  if (argc > 1 && argv[1][0] == '-' && argv[1][1] == 't' && argv[1][2] == 0) {
    tty = 1;
    --argc;
    ++argv;
  }
  if (argc < 3)
    fail(-22 /* EINVAL */, "taskexec-init arguments");
  /* The task inherits neither pipe. */
  sys3(__NR_fcntl, REPORT_FD, F_SETFD, FD_CLOEXEC);
  sys3(__NR_fcntl, STATUS_FD, F_SETFD, FD_CLOEXEC);

  /* fork(): clone(SIGCHLD) with no stack, the same on every architecture. */
  pid = sys6(__NR_clone, SIGCHLD, 0, 0, 0, 0, 0);
  if (pid == 0) {
    long r;
    /* A process group of its own: a kill(0, sig) in the task reaches the
     * task's processes, not init (which would pass it on a second time).
     * With a terminal, a session of its own that the terminal controls: the
     * command is its foreground group (^C, SIGWINCH, reads reach it). */
    if (tty) {
      r = sys3(__NR_setsid, 0, 0, 0);
      if (r < 0)
        fail(r, "setsid");
      r = sys3(__NR_ioctl, 0, TIOCSCTTY, 0);
      if (r < 0)
        fail(r, "ioctl TIOCSCTTY");
    } else {
      sys3(__NR_setpgid, 0, 0, 0);
    }
    sys4(__NR_rt_sigprocmask, SIG_SETMASK, &none, 0, sizeof none);
    r = sys3(__NR_execve, argv[1], argv + 2, envp);
    fail(r, "execve");
  }
  if (pid < 0)
    fail(pid, "fork");
  sys3(__NR_close, REPORT_FD, 0, 0);

  for (;;) {
    unsigned char info[128];
    long sig = sys4(__NR_rt_sigtimedwait, &all, info, 0, sizeof all);
    if (sig < 0)
      continue; /* EINTR */
    if (sig != SIGCHLD) {
      sys3(__NR_kill, pid, sig, 0);
      continue;
    }
    for (;;) {
      int status = 0;
      long reaped = sys4(__NR_wait4, -1, &status, WNOHANG, 0);
      if (reaped <= 0)
        break;
      if (reaped == pid) {
        sys3(__NR_write, STATUS_FD, &status, sizeof status);
        quit((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f));
      }
    }
  }
}
