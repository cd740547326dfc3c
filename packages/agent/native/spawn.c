// Native job spawner for the agent (docs/agent.md "Spawning"): posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK)
// instead of libuv's fork, whose cost grows with the agent's mapped memory, and a pidfd watched by the event loop
// to learn of the exit. The agent uses spawnAsync: the spawn (and the read of the job's start time) runs on a
// spawner thread, off the event loop (below, "Spawning off the event loop"). Linux only; the agent falls back to
// child_process when this does not load or pidfd_open is missing.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
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
static _Atomic int test_spawn_delay_ms = 0;  // test hook: a spawn that hangs (an exec on a dead NFS mount)

// Calls a JS callback from a libuv callback. A throwing callback is an uncaught exception, as it would be for a
// child_process listener.
static void call_js(napi_env env, napi_async_context async, napi_value recv, napi_value fn, size_t argc, napi_value *argv) {
  napi_value result;
  if (napi_make_callback(env, async, recv, fn, argc, argv, &result) == napi_pending_exception) {
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    napi_fatal_exception(env, exception);
  }
}

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
  napi_value cb, recv, argv[2];
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
  call_js(env, w->async, recv, cb, 2, argv);
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

// ── One spawn ──
// A request carries everything the spawn needs as C data (copied from JS on the main thread), so that do_spawn can
// run on any thread: it touches no napi value and no libuv handle. The main thread does not touch a request's
// inputs or results from submission until its delivery (the queues' mutex orders the hand-overs).
typedef struct req_s {
  char *file, **argv, **envp, *cwd;
  // results of do_spawn
  int e;               // errno, 0 on success
  const char *failed;  // the call that failed
  pid_t pid;
  int out, err, pidfd;  // the agent's ends of the socket pairs; the pidfd
  int64_t ticks;        // /proc/PID/stat field 22, or -1
  // JS side (main thread only)
  napi_env env;
  napi_ref on_spawn, on_exit;
  napi_async_context async;
  // bookkeeping (under `mu`)
  int state;             // REQ_QUEUED, REQ_SPAWNING, REQ_SPAWNED
  uint64_t queued_ms;    // when it was queued (uv_hrtime), for the growth check
  struct req_s *prev, *next;       // the list of requests not yet delivered (for the exit hook)
  struct req_s *qnext;             // the spawner threads' queue, then its done list
} req_t;

enum { REQ_QUEUED, REQ_SPAWNING, REQ_SPAWNED };

// Field 22 of /proc/PID/stat (start time in clock ticks since boot), or -1. The process is our unreaped child, so
// its entry is there even if it already exited.
static int64_t start_ticks(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n;
  do n = read(fd, buf, sizeof buf - 1);
  while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *p = strrchr(buf, ')');  // the command name may hold spaces and parentheses: fields start after the last ')'
  if (!p) return -1;
  p++;
  for (int field = 2; field < 22; field++) {  // p is just before field `field + 1`
    p = strchr(p, ' ');
    if (!p) return -1;
    p++;
  }
  char *end;
  errno = 0;
  unsigned long long v = strtoull(p, &end, 10);
  if (end == p || errno) return -1;
  return (int64_t)v;
}

// Socket pairs, posix_spawn, pidfd_open and the start time: everything of a spawn that does not need the event loop.
// Thread-safe. Every descriptor it makes is close-on-exec from its creation (SOCK_CLOEXEC, pidfds always are), so a
// spawn running at the same time on another thread (child_process's fork on the main thread) cannot inherit one.
static void do_spawn(req_t *r) {
  int out[2] = {-1, -1}, err[2] = {-1, -1}, e = 0;
  const char *failed = "spawn";
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int fa_ok = 0, attr_ok = 0;
  pid_t pid = -1;
  r->pid = -1, r->out = r->err = r->pidfd = -1, r->ticks = -1;
  char *file = r->file, **argv = r->argv, **envp = r->envp;
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
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
      // Nothing but 0–2 reaches the job: close-on-exec takes effect only at exec, so a job spawned at the same
      // moment on the other spawner thread held this one's socket ends until its exec (a hung exec: this job's
      // output never reached EOF), and a descriptor the agent inherited without close-on-exec went to every job.
      (e = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) ||
#endif
      (e = posix_spawn_file_actions_addchdir_np(&fa, r->cwd)))
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
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    // Cannot watch it: end it now rather than leave an unwatched job running.
    e = errno, failed = "pidfd_open";
    kill(-pid, SIGKILL);  // its session's group: anything it forked meanwhile too
    waitpid(pid, NULL, 0);
    goto done;
  }
  r->pid = pid, r->pidfd = pidfd, r->out = out[0], r->err = err[0];
  out[0] = err[0] = -1;
  r->ticks = start_ticks(pid);
done:
  if (fa_ok) posix_spawn_file_actions_destroy(&fa);
  if (attr_ok) posix_spawnattr_destroy(&attr);
  for (int i = 0; i < 2; i++) {
    if (out[i] >= 0) close(out[i]);
    if (err[i] >= 0) close(err[i]);
  }
  r->e = e, r->failed = failed;
}

// Ends a spawned job that cannot be handed to JS: its whole group killed, reaped, its descriptors closed.
static void discard_spawned(req_t *r, bool reap) {
  if (r->pid <= 0) return;
  kill(-r->pid, SIGKILL);
  if (reap) waitpid(r->pid, NULL, 0);
  if (r->pidfd >= 0) close(r->pidfd);
  if (r->out >= 0) close(r->out);
  if (r->err >= 0) close(r->err);
  r->pid = -1, r->pidfd = r->out = r->err = -1;
}

static void free_req(req_t *r) {
  free(r->file);
  free(r->cwd);
  free_strv(r->argv);
  free_strv(r->envp);
  free(r);
}

// Reads the JS arguments (file, argv, envp, cwd) into a new request; throws and returns NULL on bad arguments.
static req_t *req_of(napi_env env, napi_value *args) {
  req_t *r = calloc(1, sizeof *r);
  if (!r) {
    napi_throw_error(env, "ENOMEM", "spawn: out of memory");
    return NULL;
  }
  r->file = str_of(env, args[0]);
  r->argv = strv_of(env, args[1]);
  r->envp = strv_of(env, args[2]);
  r->cwd = str_of(env, args[3]);
  r->pid = -1, r->out = r->err = r->pidfd = -1, r->ticks = -1;
  if (!r->file || !r->argv || !r->envp || !r->cwd) {
    free_req(r);
    napi_throw_type_error(env, NULL, "spawn: file, argv, envp and cwd must be strings");
    return NULL;
  }
  return r;
}

static napi_value errno_error(napi_env env, int err, const char *syscall) {
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
  return error;
}

// On the main thread, after do_spawn: the exit watch on the event loop. Returns 0, or an errno with r->failed set
// (the job then ended and reaped). Takes the pidfd and the on_exit reference on success.
static int watch_spawned(napi_env env, req_t *r, napi_value on_exit) {
  watch_t *w = calloc(1, sizeof *w);
  if (w) live_watches++;
  uv_loop_t *loop;
  if (!w || napi_get_uv_event_loop(env, &loop) != napi_ok) {
    if (w) free(w), live_watches--;
    discard_spawned(r, true);
    r->failed = "watch";
    return ENOMEM;
  }
  napi_value resource_name;
  w->env = env;
  w->pid = r->pid;
  w->pidfd = r->pidfd;
  napi_create_reference(env, on_exit, 1, &w->callback);
  napi_create_string_utf8(env, "batchalyzer:spawn", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &w->async);
  w->poll.data = w;
  w->timer.data = w;
  uv_timer_init(loop, &w->timer);
  w->open_handles = 1;
  int rc = uv_poll_init(loop, &w->poll, w->pidfd);
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
    napi_delete_reference(env, w->callback);
    napi_async_destroy(env, w->async);
    if (w->open_handles == 2) uv_close((uv_handle_t *)&w->poll, on_closed);
    uv_close((uv_handle_t *)&w->timer, on_closed);  // the last close frees w
    discard_spawned(r, true);  // closes the pidfd, after uv_close took it out of epoll
    r->failed = "uv_poll";
    return -rc;
  }
  r->pidfd = -1;  // the watch's now
  return 0;
}

// spawn(file, argv[], envp[], cwd, onExit(code|null, signal)) -> [pid, stdoutFd, stderrFd]
// The synchronous form (the main thread waits for the child's exec): kept for the benchmarks' raw loop and tools.
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
  req_t *r = req_of(env, args);
  if (!r) return NULL;
  do_spawn(r);
  int e = r->e;
  if (!e) e = watch_spawned(env, r, args[4]);
  if (e) {
    napi_throw(env, errno_error(env, e, r->failed));
    free_req(r);
    return NULL;
  }
  napi_value result, vpid, vout, verr;
  napi_create_array_with_length(env, 3, &result);
  napi_create_int32(env, r->pid, &vpid);
  napi_create_int32(env, r->out, &vout);
  napi_create_int32(env, r->err, &verr);
  napi_set_element(env, result, 0, vpid);
  napi_set_element(env, result, 1, vout);
  napi_set_element(env, result, 2, verr);
  free_req(r);
  return result;
}

// ── Spawning off the event loop ──
// posix_spawn suspends its calling thread until the child execs (CLONE_VFORK), about 0.5 ms for /bin/true: done
// on the main thread, that is the agent's event loop stopped for each job. spawnAsync queues the request (under
// `mu`) for the spawner threads (two, more while spawns wait for one: on_grow), which run do_spawn and hand the
// result back through a uv_async on the main loop. Not libuv's thread pool: the agent's disk queue does its writes and fdatasyncs there (milliseconds
// each), and a spawn would wait behind them. Two threads, not one: jobs dispatched together (a burst, or
// concurrency 4 of short jobs) do not wait in line for each other's exec (measurements: docs/agent.md).

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t todo_cv = PTHREAD_COND_INITIALIZER;   // the spawner threads wait for work
static pthread_cond_t idle_cv;  // the exit hook waits for a spawn in progress (monotonic clock: module init)
static req_t *pending = NULL;              // every request not yet delivered to JS (doubly linked)
static req_t *todo_head = NULL, *todo_tail = NULL;  // the spawner threads' queue
static req_t *done_head = NULL, *done_tail = NULL;  // spawned (or failed), waiting for the main thread
static int spawning = 0;                   // requests in do_spawn now
static bool exiting = false;               // the process is exiting: spawn nothing more
static int threads_started = 0;
static int spawner_threads = 2;  // two: jobs started together do not wait in line for each other's exec
// An exec that hangs (a dead NFS mount) holds its thread for as long: when a queued spawn has waited this long for
// a thread, one more is started, up to MAX_SPAWNER_THREADS, so that the agent can still start other jobs.
#define GROW_AFTER_MS 1000
#define MAX_SPAWNER_THREADS 16
static uv_timer_t grow_timer;
static uv_async_t done_async;
static int64_t in_flight = 0;              // requests submitted, not yet delivered (main thread only)

// Appends to a singly linked queue (todo, done); the caller holds `mu`.
static void append(req_t **head, req_t **tail, req_t *r) {
  r->qnext = NULL;
  if (*tail) (*tail)->qnext = r;
  else *head = r;
  *tail = r;
}

static void pending_add(req_t *r) {
  r->prev = NULL, r->next = pending;
  if (pending) pending->prev = r;
  pending = r;
}

static void pending_remove(req_t *r) {
  if (r->prev) r->prev->next = r->next;
  else pending = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

// Runs a request's spawn on whatever thread calls it, unless the process is exiting.
static void run_req(req_t *r) {
  pthread_mutex_lock(&mu);
  if (exiting) {
    r->e = ECANCELED, r->failed = "spawn";
    pthread_mutex_unlock(&mu);
    return;
  }
  r->state = REQ_SPAWNING;
  spawning++;
  pthread_mutex_unlock(&mu);
  int delay = atomic_load(&test_spawn_delay_ms);
  if (delay > 0) usleep((useconds_t)delay * 1000);
  do_spawn(r);
  pthread_mutex_lock(&mu);
  r->state = REQ_SPAWNED;
  spawning--;
  if (exiting) discard_spawned(r, false);  // the exit hook is waiting: nobody will watch this job
  pthread_cond_broadcast(&idle_cv);
  pthread_mutex_unlock(&mu);
}

// process.exit (or the end of the process) with spawns in flight: a job that was spawned but never reached JS has
// no journal entry with its pid, so nothing would ever end it. Wait (briefly) for a spawn in progress, then kill
// every such job's group. Runs in exit(), on the thread that exits.
static void at_exit(void) {
  pthread_mutex_lock(&mu);
  exiting = true;
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += 2;
  while (spawning > 0 && pthread_cond_timedwait(&idle_cv, &mu, &until) == 0) {}
  for (req_t *r = pending; r; r = r->next)
    if (r->state == REQ_SPAWNED && r->pid > 0) kill(-r->pid, SIGKILL);
  pthread_mutex_unlock(&mu);
}

static void *spawner_main(void *arg) {
  (void)arg;
  // Born with every signal blocked (SpawnAsync): process-directed ones (SIGTERM, SIGINT, SIGCHLD for
  // child_process) go to a thread that has them unblocked, the main thread or libuv's pool, never to a spawner.
  for (;;) {
    pthread_mutex_lock(&mu);
    while (!todo_head) pthread_cond_wait(&todo_cv, &mu);
    req_t *r = todo_head;
    todo_head = r->qnext;
    if (!todo_head) todo_tail = NULL;
    r->qnext = NULL;
    pthread_mutex_unlock(&mu);
    run_req(r);
    pthread_mutex_lock(&mu);
    append(&done_head, &done_tail, r);
    pthread_mutex_unlock(&mu);
    uv_async_send(&done_async);
  }
  return NULL;
}

// On the main thread: hands one finished request to JS — onSpawn(null, pid, stdoutFd, stderrFd, startTicks) or
// onSpawn(error) — and frees it.
static void deliver(req_t *r) {
  napi_env env = r->env;
  pthread_mutex_lock(&mu);
  pending_remove(r);
  pthread_mutex_unlock(&mu);
  if (--in_flight == 0) uv_unref((uv_handle_t *)&done_async);
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value on_spawn, on_exit, recv, argv[5];
  napi_get_reference_value(env, r->on_spawn, &on_spawn);
  napi_get_reference_value(env, r->on_exit, &on_exit);
  napi_get_global(env, &recv);
  int e = r->e;
  if (!e) e = watch_spawned(env, r, on_exit);
  size_t argc = 1;
  if (e) {
    argv[0] = errno_error(env, e, r->failed);
  } else {
    argc = 5;
    napi_get_null(env, &argv[0]);
    napi_create_int32(env, r->pid, &argv[1]);
    napi_create_int32(env, r->out, &argv[2]);
    napi_create_int32(env, r->err, &argv[3]);
    if (r->ticks >= 0) napi_create_int64(env, r->ticks, &argv[4]);
    else napi_get_undefined(env, &argv[4]);
  }
  call_js(env, r->async, recv, on_spawn, argc, argv);
  napi_close_handle_scope(env, scope);
  napi_delete_reference(env, r->on_spawn);
  napi_delete_reference(env, r->on_exit);
  napi_async_destroy(env, r->async);
  free_req(r);
}

static void on_done(uv_async_t *a) {
  (void)a;
  pthread_mutex_lock(&mu);
  req_t *list = done_head;
  done_head = done_tail = NULL;
  pthread_mutex_unlock(&mu);
  while (list) {
    req_t *next = list->qnext;
    deliver(list);
    list = next;
  }
}


// Starts one more spawner thread (main thread); 0 or the error of pthread_create.
static int start_thread(void) {
  pthread_t t;
  // The new thread inherits the creating thread's mask: all blocked from its first instruction on.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&t, NULL, spawner_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) return rc;
  pthread_detach(t);
  threads_started++;
  return 0;
}

// Every half second while spawns are queued: a spawn that has waited GROW_AFTER_MS for a thread gets a new one.
static void on_grow(uv_timer_t *t) {
  pthread_mutex_lock(&mu);
  bool waiting = todo_head != NULL;
  bool stuck = waiting && uv_hrtime() / 1000000 - todo_head->queued_ms >= GROW_AFTER_MS;
  pthread_mutex_unlock(&mu);
  if (!waiting) uv_timer_stop(t);
  else if (stuck && threads_started < MAX_SPAWNER_THREADS && start_thread() == 0) spawner_threads = threads_started;
}

// spawnAsync(file, argv[], envp[], cwd, onSpawn(err | null, pid, stdoutFd, stderrFd, startTicks), onExit(code|null, signal))
// Starts the job off the event loop; onSpawn comes on a later turn of the loop, onExit after it.
static napi_value SpawnAsync(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value args[6];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  napi_valuetype t4 = napi_undefined, t5 = napi_undefined;
  if (argc >= 6) napi_typeof(env, args[4], &t4), napi_typeof(env, args[5], &t5);
  if (t4 != napi_function || t5 != napi_function) {
    napi_throw_type_error(env, NULL, "spawnAsync(file, argv, envp, cwd, onSpawn, onExit)");
    return NULL;
  }
  req_t *r = req_of(env, args);
  if (!r) return NULL;
  r->env = env;
  napi_value resource_name;
  napi_create_string_utf8(env, "batchalyzer:spawn", NAPI_AUTO_LENGTH, &resource_name);
  while (threads_started < spawner_threads) {
    int rc = start_thread();
    if (rc) {
      if (threads_started > 0) {
        spawner_threads = threads_started;  // fewer threads will do
        break;
      }
      free_req(r);
      napi_throw(env, errno_error(env, rc, "pthread_create"));
      return NULL;
    }
  }
  napi_create_reference(env, args[4], 1, &r->on_spawn);
  napi_create_reference(env, args[5], 1, &r->on_exit);
  napi_async_init(env, NULL, resource_name, &r->async);
  if (++in_flight == 1) uv_ref((uv_handle_t *)&done_async);  // a spawn in flight keeps the loop alive
  pthread_mutex_lock(&mu);
  r->state = REQ_QUEUED;
  r->queued_ms = uv_hrtime() / 1000000;
  pending_add(r);
  append(&todo_head, &todo_tail, r);
  pthread_cond_signal(&todo_cv);
  pthread_mutex_unlock(&mu);
  if (!uv_is_active((uv_handle_t *)&grow_timer)) uv_timer_start(&grow_timer, on_grow, 500, 500);
  return NULL;
}

// Test hooks: liveWatches() -> number; setTestFailure(bool); setTestSpawnDelay(ms); spawnerThreads() -> number.
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

static napi_value SpawnerThreads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_int32(env, threads_started, &v);
  return v;
}

static napi_value SetTestSpawnDelay(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  int32_t ms = 0;
  if (argc >= 1) napi_get_value_int32(env, arg, &ms);
  atomic_store(&test_spawn_delay_ms, ms > 0 ? ms : 0);
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
  static bool initialized = false;
  if (!initialized) {
    if (uv_async_init(loop, &done_async, on_done) != 0) {
      napi_throw_error(env, NULL, "spawn.c: uv_async_init failed");
      return NULL;
    }
    uv_unref((uv_handle_t *)&done_async);  // ref'd only while a spawn is in flight
    uv_timer_init(loop, &grow_timer);
    uv_unref((uv_handle_t *)&grow_timer);  // the loop stays up for done_async, not for this
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);  // the exit hook's 2 s wait is not moved by a clock step
    pthread_cond_init(&idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    atexit(at_exit);
    initialized = true;
  }
  napi_value fn;
  napi_create_function(env, "spawn", NAPI_AUTO_LENGTH, Spawn, NULL, &fn);
  napi_set_named_property(env, exports, "spawn", fn);
  napi_create_function(env, "spawnAsync", NAPI_AUTO_LENGTH, SpawnAsync, NULL, &fn);
  napi_set_named_property(env, exports, "spawnAsync", fn);
  napi_create_function(env, "supported", NAPI_AUTO_LENGTH, Supported, NULL, &fn);
  napi_set_named_property(env, exports, "supported", fn);
  napi_create_function(env, "liveWatches", NAPI_AUTO_LENGTH, LiveWatches, NULL, &fn);
  napi_set_named_property(env, exports, "liveWatches", fn);
  napi_create_function(env, "spawnerThreads", NAPI_AUTO_LENGTH, SpawnerThreads, NULL, &fn);
  napi_set_named_property(env, exports, "spawnerThreads", fn);
  napi_create_function(env, "setTestSpawnDelay", NAPI_AUTO_LENGTH, SetTestSpawnDelay, NULL, &fn);
  napi_set_named_property(env, exports, "setTestSpawnDelay", fn);
  napi_create_function(env, "setTestFailure", NAPI_AUTO_LENGTH, SetTestFailure, NULL, &fn);
  napi_set_named_property(env, exports, "setTestFailure", fn);
  return exports;
}
