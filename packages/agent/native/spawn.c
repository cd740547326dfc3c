// Native job spawner for the agent (docs/agent.md "Spawning"): posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK)
// instead of libuv's fork, whose cost grows with the agent's mapped memory, and a pidfd watched by the event loop
// to learn of the exit. Linux only; the agent falls back to child_process when this does not load or pidfd_open
// is missing.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

typedef struct {
  uv_poll_t poll;
  uv_timer_t timer;
  int open_handles;  // freed when both handles are closed
  unsigned delay_ms;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  pid_t pid;
  int pidfd;
} watch_t;

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, "EINTERNAL", "spawn.c: " #call " failed"); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static napi_value throw_errno(napi_env env, int err, const char *syscall) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", syscall, strerror(err));
  napi_value code, message, error, errnum, sc;
  const char *name = uv_err_name(-err);  // ENOENT, ELOOP, ETXTBSY…: the names child_process reports
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, error, "syscall", sc);
  napi_set_named_property(env, error, "code", code);
  napi_throw(env, error);
  return NULL;
}

// Reads a JS string into a malloc'd C string (NULL on failure).
static char *str_of(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

// A JS array of strings into a NULL-terminated char*[] (NULL on failure).
static char **strv_of(napi_env env, napi_value arr) {
  uint32_t n;
  if (napi_get_array_length(env, arr, &n) != napi_ok) return NULL;
  char **v = calloc(n + 1, sizeof(char *));
  if (!v) return NULL;
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, arr, i, &e);
    v[i] = str_of(env, e);
    if (!v[i]) {
      for (uint32_t j = 0; j < i; j++) free(v[j]);
      free(v);
      return NULL;
    }
  }
  return v;
}

static void free_strv(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

// Watches alive (allocated, not yet freed): read by the tests to catch a leak per job.
static int64_t live_watches = 0;
// Set by the tests only: the next spawns fail as if uv_poll_start had.
static bool force_poll_failure = false;

static void on_closed(uv_handle_t *h) {
  watch_t *w = h->data;
  if (--w->open_handles == 0) {
    free(w);
    live_watches--;
  }
}

static void close_watch(watch_t *w) {
  // Closed before any JS runs: JS could open a descriptor that takes the pidfd's number, and libuv's close
  // removes "that number" from epoll. The memory lives until both close callbacks ran.
  uv_close((uv_handle_t *)&w->poll, on_closed);
  uv_close((uv_handle_t *)&w->timer, on_closed);
  close(w->pidfd);
}

static void on_timer(uv_timer_t *timer);

// Reaps the job if it exited, and reports the exit to JS.
static void check_exit(watch_t *w) {
  siginfo_t info;
  memset(&info, 0, sizeof info);
  int r;
  do r = waitid(P_PID, (id_t)w->pid, &info, WEXITED | WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0 && info.si_pid == 0) {
    // Readable but nothing to reap: a tracer (gdb, strace) holds the exit. The pidfd stays readable, so polling it
    // would spin; look again later, backing off to once a second.
    uv_poll_stop(&w->poll);
    w->delay_ms = w->delay_ms ? (w->delay_ms >= 500 ? 1000 : w->delay_ms * 2) : 5;
    uv_timer_start(&w->timer, on_timer, w->delay_ms, 0);
    return;
  }
  close_watch(w);
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[2], result;
  napi_get_reference_value(env, w->callback, &cb);
  napi_get_global(env, &recv);  // make_callback wants an object as `this`
  if (r < 0) {
    // Reaped elsewhere or not our child: report an unknown exit rather than waiting forever.
    napi_get_null(env, &argv[0]);
    napi_create_int32(env, 0, &argv[1]);
  } else if (info.si_code == CLD_EXITED) {
    napi_create_int32(env, info.si_status, &argv[0]);
    napi_create_int32(env, 0, &argv[1]);
  } else {
    napi_get_null(env, &argv[0]);
    napi_create_int32(env, info.si_status, &argv[1]);
  }
  if (napi_make_callback(env, w->async, recv, cb, 2, argv, &result) == napi_pending_exception) {
    // A throwing listener is an uncaught exception, as it would be for a child_process 'exit' listener.
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    napi_fatal_exception(env, exception);
  }
  napi_close_handle_scope(env, scope);
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->async);
}

// Any wake-up, even with an error status, only leads to a look: the job is reported ended only once reaped.
static void on_exit_ready(uv_poll_t *poll, int status, int events) {
  check_exit(poll->data);
}

static void on_timer(uv_timer_t *timer) {
  check_exit(timer->data);
}

// spawn(file, argv[], envp[], cwd, onExit(code|null, signal)) -> [pid, stdoutFd, stderrFd]
static napi_value Spawn(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  napi_valuetype cb_type = napi_undefined;
  if (argc >= 5) napi_typeof(env, args[4], &cb_type);
  if (cb_type != napi_function) {
    napi_throw_type_error(env, NULL, "spawn(file, argv, envp, cwd, onExit)");
    return NULL;
  }
  char *file = str_of(env, args[0]);
  char **argv = strv_of(env, args[1]);
  char **envp = strv_of(env, args[2]);
  char *cwd = str_of(env, args[3]);
  napi_value result = NULL;
  int out[2] = {-1, -1}, err[2] = {-1, -1}, pidfd = -1, e = 0;
  const char *failed = "spawn";
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int fa_ok = 0, attr_ok = 0;
  pid_t pid = -1;
  if (!file || !argv || !envp || !cwd) {
    napi_throw_type_error(env, NULL, "spawn: file, argv, envp and cwd must be strings");
    goto done;
  }
  // Unix socket pairs, as libuv uses for child stdio: reading them costs the agent less than pipes.
  // [0] is the agent's end, [1] the job's.
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out) < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, err) < 0) {
    e = errno, failed = "socketpair";
    goto done;
  }
  if ((e = posix_spawn_file_actions_init(&fa))) goto done;
  fa_ok = 1;
  if ((e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) ||
      (e = posix_spawn_file_actions_adddup2(&fa, out[1], 1)) ||
      (e = posix_spawn_file_actions_adddup2(&fa, err[1], 2)) ||
      (e = posix_spawn_file_actions_addchdir_np(&fa, cwd)))
    goto done;
  if ((e = posix_spawnattr_init(&attr))) goto done;
  attr_ok = 1;
  // Like child_process with detached: a new session (so a process group to signal as a whole); every signal at
  // its default (Node ignores SIGPIPE, and ignored dispositions survive exec) and none blocked.
  sigset_t all, none;
  // Every bit, not sigfillset: glibc's leaves out its two internal signals (32, 33), and its posix_spawn then leaves
  // them ignored in the child, which exec keeps. The child has every signal blocked until exec, so this is safe.
  memset(&all, 0xff, sizeof all);
  sigemptyset(&none);
  if ((e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)) ||
      (e = posix_spawnattr_setsigdefault(&attr, &all)) || (e = posix_spawnattr_setsigmask(&attr, &none)))
    goto done;
  e = posix_spawn(&pid, file, &fa, &attr, argv, envp);
  if (e == ENOEXEC) {
    // A file without a #! line: like execvp (which child_process uses), run it with /bin/sh.
    size_t n = 0;
    while (argv[n]) n++;
    char **sh_argv = calloc(n + 2, sizeof(char *));
    if (!sh_argv) e = ENOMEM;
    else {
      sh_argv[0] = "/bin/sh";
      sh_argv[1] = file;
      for (size_t i = 1; i < n; i++) sh_argv[i + 1] = argv[i];
      e = posix_spawn(&pid, "/bin/sh", &fa, &attr, sh_argv, envp);
      free(sh_argv);
    }
  }
  if (e) {
    failed = "posix_spawn";
    goto done;
  }
  close(out[1]), out[1] = -1;
  close(err[1]), err[1] = -1;
  pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    // Cannot watch it: end it now rather than leave an unwatched job running.
    e = errno, failed = "pidfd_open";
    kill(-pid, SIGKILL);  // its session's group: anything it forked meanwhile too
    waitpid(pid, NULL, 0);
    goto done;
  }
  watch_t *w = calloc(1, sizeof *w);
  if (w) live_watches++;
  uv_loop_t *loop;
  napi_value resource_name;
  if (!w || napi_get_uv_event_loop(env, &loop) != napi_ok) {
    e = ENOMEM, failed = "watch";
    kill(-pid, SIGKILL);  // its session's group: anything it forked meanwhile too
    waitpid(pid, NULL, 0);
    close(pidfd);
    if (w) free(w), live_watches--;
    goto done;
  }
  w->env = env;
  w->pid = pid;
  w->pidfd = pidfd;
  napi_create_reference(env, args[4], 1, &w->callback);
  napi_create_string_utf8(env, "batchalyzer:spawn", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &w->async);
  w->poll.data = w;
  w->timer.data = w;
  uv_timer_init(loop, &w->timer);
  w->open_handles = 1;
  int rc = uv_poll_init(loop, &w->poll, pidfd);
  if (rc == 0 && force_poll_failure) {
    // Test hook (setTestFailure): as if uv_poll_start had failed, to exercise this path's cleanup.
    w->open_handles = 2;
    rc = UV_EINVAL;
  } else if (rc == 0) {
    w->open_handles = 2;
    rc = uv_poll_start(&w->poll, UV_READABLE, on_exit_ready);
  }
  if (rc) {
    // Cannot watch it: end it now rather than leave an unwatched job running.
    kill(-pid, SIGKILL);  // its session's group: anything it forked meanwhile too
    waitpid(pid, NULL, 0);
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->async);
    if (w->open_handles == 2) uv_close((uv_handle_t *)&w->poll, on_closed);
    uv_close((uv_handle_t *)&w->timer, on_closed);  // the last close frees w
    close(pidfd);
    e = -rc, failed = "uv_poll";
    goto done;
  }
  napi_value vpid, vout, verr;
  napi_create_array_with_length(env, 3, &result);
  napi_create_int32(env, pid, &vpid);
  napi_create_int32(env, out[0], &vout);
  napi_create_int32(env, err[0], &verr);
  napi_set_element(env, result, 0, vpid);
  napi_set_element(env, result, 1, vout);
  napi_set_element(env, result, 2, verr);
  out[0] = err[0] = -1;  // handed to JS
done:
  if (fa_ok) posix_spawn_file_actions_destroy(&fa);
  if (attr_ok) posix_spawnattr_destroy(&attr);
  for (int i = 0; i < 2; i++) {
    if (out[i] >= 0) close(out[i]);
    if (err[i] >= 0) close(err[i]);
  }
  free(file);
  free(cwd);
  free_strv(argv);
  free_strv(envp);
  if (e) return throw_errno(env, e, failed);
  return result;
}

// Test hooks: liveWatches() -> number; setTestFailure(bool).
static napi_value LiveWatches(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_int64(env, live_watches, &v);
  return v;
}

static napi_value SetTestFailure(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  bool on = false;
  if (argc >= 1) napi_get_value_bool(env, arg, &on);
  force_poll_failure = on;
  return NULL;
}

// Whether pidfd_open works on this kernel (Linux >= 5.3).
static napi_value Supported(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  napi_value v;
  napi_get_boolean(env, fd >= 0, &v);
  if (fd >= 0) close(fd);
  return v;
}

NAPI_MODULE_INIT() {
  // Watches live on the event loop they were made on; a worker's loop is closed under them when it ends.
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop != uv_default_loop()) {
    napi_throw_error(env, NULL, "the native spawner runs only on the main thread");
    return NULL;
  }
  napi_value fn;
  napi_create_function(env, "spawn", NAPI_AUTO_LENGTH, Spawn, NULL, &fn);
  napi_set_named_property(env, exports, "spawn", fn);
  napi_create_function(env, "supported", NAPI_AUTO_LENGTH, Supported, NULL, &fn);
  napi_set_named_property(env, exports, "supported", fn);
  napi_create_function(env, "liveWatches", NAPI_AUTO_LENGTH, LiveWatches, NULL, &fn);
  napi_set_named_property(env, exports, "liveWatches", fn);
  napi_create_function(env, "setTestFailure", NAPI_AUTO_LENGTH, SetTestFailure, NULL, &fn);
  napi_set_named_property(env, exports, "setTestFailure", fn);
  return exports;
}
