/*
 * confine-test: the worker's own confinement (sandbox_worker_confine)
 * leaves a libevent loop over a child's pipes working, and denies the
 * rest.  Does what hotplex-worker does: spawns a child (/bin/cat, in its
 * own session) on pipes, confines itself, echoes lines through the child
 * with libevent (timers, SIGCHLD through evsignal, a thread), kills the
 * child's process group and reaps it.  Prints TAP.  With -s, the
 * filters are first compiled and handed over as the spawner does for
 * hotplex-worker (sandbox_bpf_make, sandbox_bpf_take), and the same must
 * hold of the two stacked filters the worker then loads.
 */
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/sandbox/sandbox.h"
#include "tests/time_scale.h"

/* Sanitizer builds keep clone and ptrace for LeakSanitizer (seccomp.c). */
#if defined(__SANITIZE_ADDRESS__)
#define CT_SANITIZER	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CT_SANITIZER	1
#endif
#endif
#ifndef CT_SANITIZER
#define CT_SANITIZER	0
#endif

#define CT_LINES	100	/* lines echoed through the child */
#define CT_TIMEOUT_S	10	/* the loop gives up after this (times the
				   load: time_scale.h) */
#define CT_TICK_US	1000	/* the kill timer */

static int	ct_n;
static int	ct_failed;
static pid_t	ct_child = -1;
static int	ct_echoed;
static int	ct_ticks;
static int	ct_reaped;
static int	ct_reap_status;
static struct event	*ct_killer;
static const struct timeval ct_kill_after = { 0, CT_TICK_US };

static void
ct_ok(int cond, const char *what)
{
	ct_n++;
	if (cond)
		printf("ok %d - %s\n", ct_n, what);
	else {
		printf("not ok %d - %s\n", ct_n, what);
		ct_failed++;
	}
}

/* A call's errno after the filter: 0 if it succeeded. */
static int
ct_rc(long rc)
{
	return rc == -1 ? errno : 0;
}

static void
ct_expect(const char *what, int got, int want)
{
	char	buf[160];

	snprintf(buf, sizeof buf, "%s: %s", what, got == 0 ? "success" :
	    strerrorname_np(got));
	ct_ok(got == want, buf);
}

#if !CT_SANITIZER
/* fork()'s errno; a child that got through leaves at once. */
static int
ct_fork(void)
{
	pid_t	pid = fork();

	if (pid == 0)
		_exit(0);
	if (pid == -1)
		return errno;
	waitpid(pid, NULL, 0);
	return 0;
}
#endif

static void *
ct_thread(void *arg)
{
	return arg;
}

static void
ct_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer	*in = bufferevent_get_input(bev);
	char		*line;
	size_t		 len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (strcmp(line, "ping") == 0)
			ct_echoed++;
		free(line);
	}
	/* Every line came back: end the child from a timer, as the worker's
	 * kill ladder does. */
	if (ct_echoed == CT_LINES)
		evtimer_add(ct_killer, &ct_kill_after);
}

static void
ct_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_disable(bev, EV_READ);
}

static void
ct_sigchld(evutil_socket_t sig, short what, void *arg)
{
	struct event_base	*base = arg;
	int			 st;
	pid_t			 pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		if (pid == ct_child) {
			ct_reaped = 1;
			ct_reap_status = st;
			event_base_loopexit(base, NULL);
		}
}

static void
ct_kill(evutil_socket_t fd, short what, void *arg)
{
	ct_ticks++;
	kill(-ct_child, SIGTERM);
}

static void
ct_timeout(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

/* Seccomp_filters of /proc/self/status, or -1. */
static int
ct_filters(void)
{
	FILE	*f;
	char	 line[256];
	int	 n = -1;

	if ((f = fopen("/proc/self/status", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "Seccomp_filters: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

int
main(int argc, char **argv)
{
	struct event_base	*base;
	struct bufferevent	*to, *from;
	struct event		*sigchld, *timeout;
	struct timeval		 tv_timeout = { 0, 0 };
	char			 err[SANDBOX_ERR_MAX];
	int			 in[2], out[2], ready[2], sp[2], i, fd;
	int			 shared = argc > 1 && strcmp(argv[1], "-s") == 0;
	int			 bpf, filters0, confined;
	char			 c;
	pthread_t		 th;
	pid_t			 self = getpid();

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Read before confinement: it opens /proc/loadavg. */
	tv_timeout.tv_sec = time_scaled_s(CT_TIMEOUT_S);
	/* The worker's base exists before the CLI is spawned. */
	if ((base = event_base_new()) == NULL)
		return 1;
	if (pipe2(in, O_CLOEXEC) == -1 || pipe2(out, O_CLOEXEC) == -1 ||
	    pipe2(ready, O_CLOEXEC) == -1)
		return 1;
	if ((ct_child = fork()) == -1)
		return 1;
	if (ct_child == 0) {
		/*
		 * Its own group before anything looks at it: the end of
		 * ready closes at exec, after setsid(), and the parent
		 * waits for that rather than for time to pass.
		 */
		setsid();
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		execl("/bin/cat", "cat", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(ready[1]);
	while (read(ready[0], &c, 1) == -1 && errno == EINTR)
		;
	close(ready[0]);

	if (shared) {
		/* The spawner's part, then the worker's. */
		bpf = sandbox_bpf_make(10, err, sizeof err);
		ct_ok(bpf >= 10, "sandbox_bpf_make: a descriptor above 10");
		ct_ok(bpf != -1 && sandbox_bpf_take(bpf, err, sizeof err) == 0,
		    "sandbox_bpf_take");
		ct_ok(bpf != -1 && write(bpf, "x", 1) == -1 && errno == EPERM,
		    "the compiled filters are sealed against writes");
		if (bpf != -1)
			close(bpf);
	}
	filters0 = ct_filters();
	confined = sandbox_worker_confine(ct_child, err, sizeof err) == 0;
	ct_ok(confined, "sandbox_worker_confine");
	/* The shared program and kill's own, or the one compiled here. */
	ct_ok(ct_filters() == filters0 + (shared ? 2 : 1),
	    shared ? "two filters stacked (shared, kill's)" :
	    "one filter compiled here");
	if (!confined) {
		fprintf(stderr, "confine-test: %s\n", err);
		kill(ct_child, SIGKILL);
		return 1;
	}

	/* What the worker must still do. */
	ct_expect("control: open a file read-only",
	    (fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC)) == -1 ? errno :
	    0, 0);
	if (fd != -1)
		close(fd);
	ct_expect("control: socketpair", ct_rc(socketpair(AF_UNIX,
	    SOCK_STREAM | SOCK_CLOEXEC, 0, sp)), 0);
	ct_expect("control: AF_UNIX socket (syslog)",
	    (fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1 ?
	    errno : 0, 0);
	if (fd != -1)
		close(fd);
	ct_expect("control: kill(child, 0)", ct_rc(kill(ct_child, 0)), 0);
	ct_expect("control: kill(-child group, 0)",
	    ct_rc(kill(-ct_child, 0)), 0);
	ct_expect("control: kill(self, 0)", ct_rc(kill(self, 0)), 0);
	ct_expect("control: a thread", pthread_create(&th, NULL, ct_thread,
	    NULL), 0);
	pthread_join(th, NULL);

	/* What it may no longer do. */
	ct_expect("execve", ct_rc(execl("/bin/true", "true", (char *)NULL)),
	    EPERM);
#if !CT_SANITIZER
	ct_expect("fork (clone without CLONE_THREAD)", ct_fork(), ENOSYS);
#endif
	ct_expect("vfork syscall", ct_rc(syscall(SYS_vfork)), EPERM);
	ct_expect("TCP socket", ct_rc(socket(AF_INET, SOCK_STREAM, 0)),
	    ENOSYS);
	ct_expect("open for writing", ct_rc(open("/tmp/confine-test-x",
	    O_WRONLY | O_CREAT, 0600)), ENOSYS);
	ct_expect("open read-write", ct_rc(open("/etc/passwd", O_RDWR)),
	    ENOSYS);
	ct_expect("unlink", ct_rc(unlink("/nonexistent-hotplex")), EPERM);
	ct_expect("kill(1, 0)", ct_rc(kill(1, 0)), ENOSYS);
	ct_expect("kill(0, 0): the worker's own group",
	    ct_rc(kill(0, 0)), ENOSYS);
	ct_expect("setuid(0)", ct_rc(syscall(SYS_setuid, 0)), EPERM);
#if !CT_SANITIZER
	ct_expect("ptrace", ct_rc(syscall(SYS_ptrace, 0, 0, 0, 0)), EPERM);
#endif
	ct_expect("mount", ct_rc(mount("none", "/nonexistent-hotplex",
	    "hotplex-nonexistent-fs", 0, NULL)), EPERM);

	/* The event loop: lines to the child and back. */
	to = bufferevent_socket_new(base, in[1], BEV_OPT_CLOSE_ON_FREE);
	from = bufferevent_socket_new(base, out[0], BEV_OPT_CLOSE_ON_FREE);
	sigchld = evsignal_new(base, SIGCHLD, ct_sigchld, base);
	ct_killer = evtimer_new(base, ct_kill, NULL);
	timeout = evtimer_new(base, ct_timeout, base);
	if (to == NULL || from == NULL || sigchld == NULL || ct_killer == NULL ||
	    timeout == NULL)
		return 1;
	bufferevent_setcb(from, ct_read, NULL, ct_event, NULL);
	bufferevent_enable(from, EV_READ);
	for (i = 0; i < CT_LINES; i++)
		evbuffer_add_printf(bufferevent_get_output(to), "ping\n");
	event_add(sigchld, NULL);
	evtimer_add(timeout, &tv_timeout);
	event_base_dispatch(base);

	ct_ok(ct_echoed == CT_LINES, "event loop: every line came back "
	    "through the child");
	ct_ok(ct_ticks > 0, "event loop: the kill timer fired");
	ct_ok(ct_reaped && WIFSIGNALED(ct_reap_status) &&
	    WTERMSIG(ct_reap_status) == SIGTERM,
	    "child group killed with SIGTERM and reaped via SIGCHLD");

	if (!ct_reaped) {
		kill(-ct_child, SIGKILL);
		waitpid(ct_child, NULL, 0);
	}
	bufferevent_free(to);
	bufferevent_free(from);
	event_free(sigchld);
	event_free(ct_killer);
	event_free(timeout);
	event_base_free(base);
	printf("1..%d\n", ct_n);
	return ct_failed == 0 ? 0 : 1;
}
