/*
 * The Claude CLI child: spawned in its own process group with its stdio on
 * pipes, read line by line (bounded), written one NDJSON line at a time,
 * killed by process group with a TERM -> grace -> KILL ladder.
 */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/line.h"
#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "policy/sandbox/sandbox.h"
#include "worker/worker.h"

#define CLI_EOF_GRACE_MS	1000	/* stdout EOF after exit, at most */
#define CLI_CHILD_STACK		(256 * 1024)	/* a vfork-style child's */
#define CLI_CHILD_GUARD		4096	/* below it, never mapped usable */

/*
 * The vfork-style start is left out under AddressSanitizer: a child on a
 * stack of our own would leave its never-left frames poisoned in the
 * shadow memory we share.
 */
#if defined(__SANITIZE_ADDRESS__)
#define CLI_VFORK	0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CLI_VFORK	0
#endif
#endif
#ifndef CLI_VFORK
#define CLI_VFORK	1
#endif

struct cli {
	struct event_base	*base;
	pid_t			 pid;		/* also the process group */
	int			 status;	/* wait status once reaped */
	int			 reaped;
	int			 out_eof;
	struct bufferevent	*in;		/* our end of its stdin */
	struct bufferevent	*out;		/* its stdout */
	struct bufferevent	*err;		/* its stderr */
	struct line_reader	 reader;
	char			*tail;		/* stderr ring, stderr_max */
	size_t			 tail_max, tail_len;
	struct event		*kill_timer;
	struct cli_cb		 cb;
	int			 exited_told;
};

/*
 * The report pipe: the child writes records on it until exec closes it
 * (close-on-exec); an error record means it gave up.  A record is smaller
 * than PIPE_BUF, so it arrives whole.
 */
#define CLI_REPORT_ERROR	'E'
#define CLI_REPORT_WARNING	'W'
#define CLI_REPORT_FD		3	/* where the child keeps the pipe */

struct cli_report {
	char	kind;
	int	err;		/* the errno of a failed call, or 0 */
	char	msg[CLI_REPORT_MAX];
};

static void __attribute__((format(printf, 4, 5)))
cli_report(int fd, char kind, int err, const char *fmt, ...)
{
	struct cli_report	r;
	va_list			ap;

	memset(&r, 0, sizeof r);
	r.kind = kind;
	r.err = err;
	va_start(ap, fmt);
	vsnprintf(r.msg, sizeof r.msg, fmt, ap);
	va_end(ap);
	(void)!write(fd, &r, sizeof r);
}

/*
 * After the privilege drop: the directories the CLI needs must be usable
 * by its uid (Landlock grants nothing the file modes refuse).
 */
static int
cli_child_access(int report, const char *what, const char *path)
{
	if (path == NULL || access(path, R_OK | W_OK | X_OK) == 0)
		return 0;
	cli_report(report, CLI_REPORT_ERROR, 0,
	    "%s %s not usable by uid %u: %s",
	    what, path, (unsigned)getuid(), strerror(errno));
	return -1;
}

/* Child side: never returns. */
static void __attribute__((noreturn))
cli_child(const struct cli_spec *spec, int in[2], int out[2], int errp[2],
    int report, pid_t parent)
{
	const struct sandbox_conf *sc = spec->sandbox;
	char		 msg[SANDBOX_ERR_MAX];
	const char	*what;
	sigset_t	 none;
	int		 sig;

	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	what = "setsid";
	if (setsid() == -1)
		goto fail;
	what = "prctl PR_SET_PDEATHSIG";
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		goto fail;
	if (getppid() != parent)	/* the worker died before prctl */
		_exit(127);
	what = "dup2";
	if (dup2(in[0], 0) == -1 || dup2(out[1], 1) == -1 ||
	    dup2(errp[1], 2) == -1)
		goto fail;
	if (sc != NULL) {
		/* It changes to the workdir itself, before dropping. */
		if (sandbox_child(sc, msg, sizeof msg) == -1) {
			cli_report(report, CLI_REPORT_ERROR, 0, "sandbox: %s",
			    msg);
			_exit(127);
		}
		if (msg[0] != '\0')
			cli_report(report, CLI_REPORT_WARNING, 0,
			    "sandbox: %s", msg);
		if (sc->drop_privs &&
		    (cli_child_access(report, "workdir", sc->workdir) == -1 ||
		    cli_child_access(report, "TMPDIR", sc->tmpdir) == -1 ||
		    cli_child_access(report, "CLI config dir",
		    sc->config_dir) == -1))
			_exit(127);
	} else {
		if (chdir(spec->workdir) == -1) {
			cli_report(report, CLI_REPORT_ERROR, 0, "chdir %s: %s",
			    spec->workdir, strerror(errno));
			_exit(127);
		}
	}
	/* Every other descriptor goes; the report pipe closes on exec. */
	what = "dup3";
	if (report != CLI_REPORT_FD) {
		if (dup3(report, CLI_REPORT_FD, O_CLOEXEC) == -1)
			goto fail;
		report = CLI_REPORT_FD;
	}
	closefrom(CLI_REPORT_FD + 1);
	what = spec->path;
	execvpe(spec->path, (char *const *)spec->argv,
	    (char *const *)spec->envp);
fail:
	cli_report(report, CLI_REPORT_ERROR, errno, "%s%s: %s",
	    what == spec->path ? "exec " : "", what, strerror(errno));
	_exit(127);
}

struct cli_child_args {
	const struct cli_spec	*spec;
	int			*in, *out, *errp;
	int			 report;
	pid_t			 parent;
};

static int
cli_child_start(void *arg)
{
	struct cli_child_args	*a = arg;

	cli_child(a->spec, a->in, a->out, a->errp, a->report, a->parent);
}

/*
 * The child, started vfork-style where it may be: it shares our memory
 * and we are suspended until it execs or exits, so no page table is
 * copied and no copy-on-write fault follows (the CLI starts with ~1 ms
 * less CPU here).  Only while we have one thread (glibc's set*id calls
 * act on every thread of a process it believes threaded) and the child's
 * path allocates nothing (sandbox_child_allocates); otherwise fork.
 * Signals are blocked; the child resets its own copy of the handlers.
 */
static pid_t
cli_start_child(struct cli_child_args *a)
{
	char	*stack;
	pid_t	 pid;
	int	 e;

	if (!CLI_VFORK || !__libc_single_threaded ||
	    (a->spec->sandbox != NULL &&
	    sandbox_child_allocates(a->spec->sandbox)))
		goto forked;
	stack = mmap(NULL, CLI_CHILD_GUARD + CLI_CHILD_STACK, PROT_NONE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		return -1;
	if (mprotect(stack + CLI_CHILD_GUARD, CLI_CHILD_STACK,
	    PROT_READ | PROT_WRITE) == -1) {
		e = errno;
		munmap(stack, CLI_CHILD_GUARD + CLI_CHILD_STACK);
		errno = e;
		return -1;
	}
	pid = clone(cli_child_start, stack + CLI_CHILD_GUARD + CLI_CHILD_STACK,
	    CLONE_VM | CLONE_VFORK | SIGCHLD, a);
	e = errno;
	munmap(stack, CLI_CHILD_GUARD + CLI_CHILD_STACK);
	errno = e;
	return pid;

forked:
	if ((pid = fork()) == 0)
		cli_child_start(a);
	return pid;
}

/*
 * Reads the child's report records until exec closes the pipe.  Returns
 * -1 with the message in err and the failed call's errno (or 0) in *e if
 * it gave up; warnings are logged.
 */
static int
cli_read_report(int fd, pid_t pid, char *err, size_t errlen, int *e)
{
	struct cli_report	r;
	ssize_t			n;
	int			failed = 0;

	*e = 0;
	for (;;) {
		n = read(fd, &r, sizeof r);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (n != (ssize_t)sizeof r) {
			snprintf(err, errlen, "CLI child: short report");
			failed = 1;
			continue;
		}
		r.msg[sizeof r.msg - 1] = '\0';
		if (r.kind == CLI_REPORT_WARNING)
			log_warnx("CLI %ld: %s", (long)pid, r.msg);
		else if (!failed) {
			snprintf(err, errlen, "%s", r.msg);
			*e = r.err;
			failed = 1;
		}
	}
	return failed ? -1 : 0;
}

static void
cli_tell_exit(struct cli *c)
{
	if (c->exited_told || !c->reaped || !c->out_eof)
		return;
	c->exited_told = 1;
	if (c->kill_timer != NULL)
		event_del(c->kill_timer);
	c->cb.exited(c->cb.arg, c->status);
}

static void
cli_read_lines(struct cli *c)
{
	struct evbuffer	*in = bufferevent_get_input(c->out);
	char		*line;
	size_t		 len;
	enum line_status st;

	for (;;) {
		st = line_next(&c->reader, in, &line, &len);
		if (st == LINE_NONE || st == LINE_OVERFLOW) {
			if (st == LINE_NONE)
				break;
			continue;
		}
		if (st == LINE_DROPPED) {
			c->cb.line_dropped(c->cb.arg, len, c->reader.head);
			continue;
		}
		c->cb.line(c->cb.arg, line, len);
		free(line);
		if (c->exited_told)
			break;
	}
}

static void
cli_out_read(struct bufferevent *bev, void *arg)
{
	cli_read_lines(arg);
}

static void
cli_out_event(struct bufferevent *bev, short what, void *arg)
{
	struct cli	*c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		cli_read_lines(c);
		bufferevent_disable(c->out, EV_READ);
		c->out_eof = 1;
		cli_tell_exit(c);
	}
}

static void
cli_err_read(struct bufferevent *bev, void *arg)
{
	struct cli	*c = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	size_t		 n = evbuffer_get_length(in), keep;

	/* Keep the last tail_max bytes. */
	if (n >= c->tail_max) {
		evbuffer_drain(in, n - c->tail_max);
		c->tail_len = evbuffer_remove(in, c->tail, c->tail_max);
		return;
	}
	keep = c->tail_max - n;
	if (c->tail_len > keep) {
		memmove(c->tail, c->tail + (c->tail_len - keep), keep);
		c->tail_len = keep;
	}
	c->tail_len += evbuffer_remove(in, c->tail + c->tail_len, n);
}

static void
cli_err_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_disable(bev, EV_READ);
}

static void
cli_in_event(struct bufferevent *bev, short what, void *arg)
{
	/* EPIPE on its stdin: the CLI is going; its exit is reported. */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_disable(bev, EV_WRITE);
}

static void
cli_kill_timer(evutil_socket_t fd, short what, void *arg)
{
	struct cli	*c = arg;

	if (!c->reaped || !c->out_eof) {
		log_warnx("cli %ld did not exit in time: SIGKILL", (long)c->pid);
		kill(-c->pid, SIGKILL);
	}
}

/*
 * NULL with the reason in err and errno set (0 if no call failed): out of
 * descriptors or memory is the caller's capacity error.
 */
struct cli *
cli_spawn(struct event_base *base, const struct cli_spec *spec,
    size_t line_max, size_t stderr_max, const struct cli_cb *cb, char *err,
    size_t errlen)
{
	struct cli		*c;
	struct cli_child_args	 a;
	int			 in[2], out[2], errp[2], rep[2], e = 0, n;
	sigset_t		 all, old;
	pid_t			 pid;

	if (pipe2(in, O_CLOEXEC) == -1)
		goto syserr0;
	if (pipe2(out, O_CLOEXEC) == -1)
		goto syserr1;
	if (pipe2(errp, O_CLOEXEC) == -1)
		goto syserr2;
	if (pipe2(rep, O_CLOEXEC) == -1)
		goto syserr3;

	a.spec = spec;
	a.in = in;
	a.out = out;
	a.errp = errp;
	a.report = rep[1];
	a.parent = getpid();
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	pid = cli_start_child(&a);
	e = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(rep[1]);
	close(in[0]);
	close(out[1]);
	close(errp[1]);
	if (pid == -1) {
		snprintf(err, errlen, "fork: %s", strerror(e));
		goto fail;
	}
	/* The report pipe closes on a successful exec. */
	n = cli_read_report(rep[0], pid, err, errlen, &e);
	close(rep[0]);
	if (n == -1) {
		waitpid(pid, NULL, 0);
		close(in[1]);
		close(out[0]);
		close(errp[0]);
		errno = e;
		return NULL;
	}

	c = xcalloc(1, sizeof *c);
	c->base = base;
	c->pid = pid;
	c->cb = *cb;
	c->tail_max = stderr_max > 0 ? stderr_max : 1;
	c->tail = xmalloc(c->tail_max + 1);
	line_init(&c->reader, line_max);
	util_set_nonblock(in[1]);
	util_set_nonblock(out[0]);
	util_set_nonblock(errp[0]);
	c->in = bufferevent_socket_new(base, in[1], BEV_OPT_CLOSE_ON_FREE);
	c->out = bufferevent_socket_new(base, out[0], BEV_OPT_CLOSE_ON_FREE);
	c->err = bufferevent_socket_new(base, errp[0], BEV_OPT_CLOSE_ON_FREE);
	if (c->in == NULL || c->out == NULL || c->err == NULL)
		fatalx("cli_spawn: bufferevent_socket_new");
	bufferevent_setcb(c->in, NULL, NULL, cli_in_event, c);
	bufferevent_setcb(c->out, cli_out_read, NULL, cli_out_event, c);
	bufferevent_setcb(c->err, cli_err_read, NULL, cli_err_event, c);
	bufferevent_enable(c->in, EV_WRITE);
	bufferevent_enable(c->out, EV_READ);
	bufferevent_enable(c->err, EV_READ);
	c->kill_timer = evtimer_new(base, cli_kill_timer, c);
	return c;

fail:
	close(in[1]);
	close(out[0]);
	close(errp[0]);
	close(rep[0]);
	errno = e;
	return NULL;
syserr3:
	e = errno;
	close(errp[0]);
	close(errp[1]);
	errno = e;
syserr2:
	e = errno;
	close(out[0]);
	close(out[1]);
	errno = e;
syserr1:
	e = errno;
	close(in[0]);
	close(in[1]);
	errno = e;
syserr0:
	e = errno;
	snprintf(err, errlen, "pipe: %s", strerror(e));
	errno = e;
	return NULL;
}

void
cli_pause(struct cli *c, int paused)
{
	if (c->out_eof)
		return;
	if (paused)
		bufferevent_disable(c->out, EV_READ);
	else
		bufferevent_enable(c->out, EV_READ);
}

pid_t
cli_pid(const struct cli *c)
{
	return c->pid;
}

int
cli_write(struct cli *c, const char *line, size_t len)
{
	struct evbuffer	*out;

	if (c->reaped || c->in == NULL)
		return -1;
	out = bufferevent_get_output(c->in);
	if (evbuffer_add(out, line, len) == -1 ||
	    evbuffer_add(out, "\n", 1) == -1)
		return -1;
	return 0;
}

void
cli_kill(struct cli *c, uint64_t grace_ms)
{
	struct timeval	tv;

	if (c->reaped && c->out_eof)
		return;
	/* Closing stdin first lets a well-behaved CLI exit on its own. */
	if (c->in != NULL) {
		bufferevent_free(c->in);
		c->in = NULL;
	}
	if (kill(-c->pid, SIGTERM) == -1 && errno != ESRCH)
		log_warn("kill -%ld", (long)c->pid);
	/* A group the master froze (freeze_after) must run to see it. */
	kill(-c->pid, SIGCONT);
	tv = util_ms_tv(grace_ms);
	evtimer_add(c->kill_timer, &tv);
}

const char *
cli_stderr_tail(struct cli *c)
{
	c->tail[c->tail_len] = '\0';
	return c->tail;
}

static void
cli_eof_timer(evutil_socket_t fd, short what, void *arg)
{
	struct cli	*c = arg;

	log_warnx("CLI %ld exited but its stdout stays open", (long)c->pid);
	cli_read_lines(c);
	bufferevent_disable(c->out, EV_READ);
	c->out_eof = 1;
	cli_tell_exit(c);
}

void
cli_reap(struct cli *c)
{
	struct timeval	tv;
	int		status;
	pid_t		r;

	if (c->reaped)
		return;
	do
		r = waitpid(c->pid, &status, WNOHANG);
	while (r == -1 && errno == EINTR);
	if (r != c->pid)
		return;
	c->reaped = 1;
	c->status = status;
	/* Whatever is left of its group goes too. */
	kill(-c->pid, SIGKILL);
	if (c->out_eof) {
		cli_tell_exit(c);
		return;
	}
	/*
	 * Its last lines are still in the pipe: wait for EOF, but not for a
	 * process that inherited the pipe and lives on.
	 */
	tv = util_ms_tv(CLI_EOF_GRACE_MS);
	event_del(c->kill_timer);
	event_assign(c->kill_timer, c->base, -1, 0, cli_eof_timer, c);
	evtimer_add(c->kill_timer, &tv);
}

void
cli_free(struct cli *c)
{
	if (c == NULL)
		return;
	if (!c->reaped) {
		kill(-c->pid, SIGKILL);
		waitpid(c->pid, NULL, 0);
	} else
		kill(-c->pid, SIGKILL);
	if (c->in != NULL)
		bufferevent_free(c->in);
	bufferevent_free(c->out);
	bufferevent_free(c->err);
	event_free(c->kill_timer);
	free(c->tail);
	free(c);
}
