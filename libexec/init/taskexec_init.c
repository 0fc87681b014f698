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
