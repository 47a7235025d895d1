/*
 * The spawner: the part of hotplexd that keeps the privileges it was
 * started with (OpenSSH's monitor, OpenSMTPD's parent).  Forked before the
 * master reads anything from anyone; the master then drops to daemon_user
 * (privsep.c) and asks it, over a socketpair, for a fixed set of typed
 * requests, each validated here:
 *
 *	SPAWN	start a hotplex-worker; the master gets its channel by
 *		SCM_RIGHTS.  Workers start as the spawner's uid and become
 *		the session's identity themselves (worker/become.c).
 *		Asked and answered on a channel of their own, which the
 *		master reads from its loop: it never waits for a spawn,
 *		and a burst has several asked at once.
 *	KILL	signal one of our workers.
 *	KILLPG	signal the process group of a worker's CLI: the group
 *		leader must be a child of one of our workers.  A freeze or
 *		thaw (STOP, CONT) also reaches every other process under
 *		that worker.
 *	RMTMP	remove one session's TMPDIR under our state_dir.  Answered,
 *		and the answers taken from the master's loop: a wave of
 *		sessions ending does not wait on each removal.  Only a new
 *		worker for a session whose removal is still pending waits
 *		for it (spawner_rmtmp_settle), so that it never loses the
 *		TMPDIR it makes.
 *	LOG	reopen our log file; the master gets the descriptor.
 *
 * It parses no JSON and no client line.  It is the workers' parent and a
 * child subreaper: it reaps them and tells the master of each exit on a
 * second socketpair, and kills whatever else re-parents to it (tools that
 * escaped their CLI's group).  It ends with the master: on EOF it kills
 * its workers and removes the socket and the pid file, which the
 * unprivileged master may not.  The master exits when the spawner goes (the workers
 * go with it).
 */
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/msg.h"
#include "common/procfs.h"
#include "common/proto.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"
#include "worker/worker.h"

enum spawner_type {
	SPAWNER_SPAWN = 1,
	SPAWNER_KILL,
	SPAWNER_KILLPG,
	SPAWNER_RMTMP,
	SPAWNER_LOG
};

/* One request, one datagram (SOCK_SEQPACKET): its size is checked. */
struct spawner_req {
	uint32_t	type;
	int32_t		pid;	/* KILL, KILLPG: our worker */
	int32_t		pgid;	/* KILLPG: its CLI's group */
	int32_t		sig;	/* KILL, KILLPG */
	uint32_t	level;	/* SPAWN: the worker's log level */
	uint32_t	json;	/* SPAWN: JSON log lines */
	uint32_t	uid;	/* RMTMP: the session's owner */
	char		name[PROTO_SESSION_MAX + 1];	/* RMTMP, NUL ended */
};

/* The answer to SPAWN (with the channel), RMTMP, and LOG (with the file). */
struct spawner_rep {
	int32_t		pid;	/* SPAWN: the worker, or -1 */
	int32_t		err;	/* errno, or 0 */
};

/* A child reaped, on the exit channel. */
struct spawner_exit {
	int32_t		pid;
	int32_t		status;
};

#define SPAWNER_COMM		"hotplex-spawner"	/* 15 bytes at most */
#define SPAWNER_SWEEP_MAX	65536	/* children looked at per sweep */
#define SPAWNER_SWEEP_MS	1000	/* at most one sweep per second */
#define SPAWNER_ANSWERS_MAX	16	/* answers per callback */
#define SPAWNER_RMTMP_BUCKETS	1024	/* pending removals; a power of two */
#define SPAWNER_TREE_MAX	256	/* processes under a worker, per freeze */

/* An RMTMP sent and not answered yet (the master's side). */
struct spawner_rmtmp {
	TAILQ_ENTRY(spawner_rmtmp) entry;
	unsigned		 bucket;
	char			 name[PROTO_SESSION_MAX + 1];
};
TAILQ_HEAD(spawner_rmtmps, spawner_rmtmp);

/*
 * RMTMPs in the order sent (the spawner answers in that order), and how
 * many are pending per (uid, name) hash bucket: a check is O(1).
 */
static struct {
	struct spawner_rmtmps	 q;
	unsigned		 count[SPAWNER_RMTMP_BUCKETS];
	struct event		*ev;
} rm = { TAILQ_HEAD_INITIALIZER(rm.q), { 0 }, NULL };

/* The master's side. */
static struct {
	pid_t	 pid;
	int	 req;		/* requests; RMTMP and LOG answered here */
	int	 spawn;		/* SPAWN, answered in order, read from the loop */
	int	 exits;		/* exits, read from the loop */
	struct event *spawn_ev;
	void	(*spawned)(pid_t, int, int);	/* pid, channel, errno */
} sp = { -1, -1, -1, -1, NULL, NULL };

/* The spawner's side. */
static struct {
	pid_t		*workers;	/* live workers, unordered */
	size_t		 nworkers, cap;
	struct spawner_exit *queue;	/* exits not yet sent */
	size_t		 nqueue, qcap;
	/*
	 * RMTMP answers not yet sent: never sent blocking, as the master may
	 * be sending us requests meanwhile (both blocked on full buffers).
	 */
	struct spawner_rep *answers;
	size_t		 nanswers, acap;
	uint64_t	 last_sweep_ms;
	int		 sweep_due;
	int		 bpf;		/* compiled filters (WORKER_BPF_FD), or -1 */
	char		*state_dir;	/* as at start: RMTMP stays there */
	char		*socket;	/* removed when the master is gone */
	const char	*pidfile;
} sps;

extern char **environ;

static int
spawner_send_fd(int s, const void *buf, size_t len, int fd)
{
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsg;

	memset(&mh, 0, sizeof mh);
	iov.iov_base = (void *)buf;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (fd != -1) {
		memset(&cmsg, 0, sizeof cmsg);
		mh.msg_control = cmsg.buf;
		mh.msg_controllen = sizeof cmsg.buf;
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	while (sendmsg(s, &mh, MSG_NOSIGNAL) == -1)
		if (errno != EINTR)
			return -1;
	return 0;
}

/*
 * One datagram of exactly len bytes, and the descriptor it carries; flags
 * for recvmsg (MSG_DONTWAIT).
 */
static ssize_t
spawner_recv_fd(int s, void *buf, size_t len, int *fd, int flags)
{
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	ssize_t		 n;
	int		 got;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cmsg;

	*fd = -1;
	memset(&mh, 0, sizeof mh);
	iov.iov_base = buf;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cmsg.buf;
	mh.msg_controllen = sizeof cmsg.buf;
	while ((n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC | flags)) == -1)
		if (errno != EINTR)
			return -1;
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET &&
		    cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int))) {
			memcpy(&got, CMSG_DATA(cm), sizeof got);
			if (*fd == -1)
				*fd = got;
			else
				close(got);
		}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		if (*fd != -1)
			close(*fd);
		*fd = -1;
		/* A descriptor lost: we had no room for it (capacity). */
		errno = mh.msg_flags & MSG_CTRUNC ? EMFILE : EMSGSIZE;
		return -1;
	}
	return n;
}

/* -- The spawner process. -- */

static ssize_t
spawner_worker_index(pid_t pid)
{
	size_t	i;

	for (i = 0; i < sps.nworkers; i++)
		if (sps.workers[i] == pid)
			return (ssize_t)i;
	return -1;
}

static void
spawner_queue_exit(pid_t pid, int status)
{
	if (sps.nqueue == sps.qcap) {
		sps.qcap = sps.qcap == 0 ? 64 : sps.qcap * 2;
		sps.queue = xreallocarray(sps.queue, sps.qcap,
		    sizeof *sps.queue);
	}
	sps.queue[sps.nqueue].pid = pid;
	sps.queue[sps.nqueue].status = status;
	sps.nqueue++;
}

/* What the master has not read yet waits here, never blocking us. */
static void
spawner_flush_exits(int fd)
{
	size_t	i;

	for (i = 0; i < sps.nqueue; i++)
		if (send(fd, &sps.queue[i], sizeof sps.queue[i],
		    MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
			if (errno != EAGAIN && errno != EINTR)
				sps.nqueue = i;	/* the master is gone */
			break;
		}
	memmove(sps.queue, sps.queue + i, (sps.nqueue - i) *
	    sizeof *sps.queue);
	sps.nqueue -= i;
}

/* posix_spawn, as pool.c did: the channel on WORKER_FD, nothing else. */
static pid_t
spawner_do_spawn(const struct spawner_req *r, int *chan)
{
	static const char *levels[] = { "error", "warn", "info", "debug" };
	int			 sv[2], e, fd, logfd;
	pid_t			 pid;
	sigset_t		 all, none;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t	 attr;
	const char		*argv[6];

	*chan = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	/* dup2 onto itself would keep close-on-exec. */
	if (sv[1] == WORKER_FD) {
		if ((fd = fcntl(sv[1], F_DUPFD_CLOEXEC, WORKER_FD + 1)) == -1) {
			e = errno;
			close(sv[0]);
			close(sv[1]);
			errno = e;
			return -1;
		}
		close(sv[1]);
		sv[1] = fd;
	}
	argv[0] = "hotplex-worker";
	argv[1] = "-d";
	argv[2] = levels[r->level];
	/* Workers log where we do: our file or stderr as theirs, or syslog. */
	logfd = log_getfd();
	argv[3] = logfd != -1 ? "-f" : NULL;
	argv[4] = logfd != -1 && r->json ? "-j" : NULL;
	argv[5] = NULL;

	sigfillset(&all);
	sigemptyset(&none);
	if ((e = posix_spawn_file_actions_init(&fa)) != 0 ||
	    (e = posix_spawnattr_init(&attr)) != 0)
		fatalx("posix_spawn set-up: %s", strerror(e));
	/* The log first (our file or stderr): its descriptor may be WORKER_FD. */
	if ((logfd > STDERR_FILENO && (e = posix_spawn_file_actions_adddup2(&fa,
	    logfd, STDERR_FILENO)) != 0) ||
	    (e = posix_spawn_file_actions_adddup2(&fa, sv[1], WORKER_FD)) != 0 ||
	    (sps.bpf != -1 && (e = posix_spawn_file_actions_adddup2(&fa,
	    sps.bpf, WORKER_BPF_FD)) != 0) ||
	    (e = posix_spawn_file_actions_addclosefrom_np(&fa,
	    (sps.bpf != -1 ? WORKER_BPF_FD : WORKER_FD) + 1)) != 0 ||
	    (e = posix_spawnattr_setsigdefault(&attr, &all)) != 0 ||
	    (e = posix_spawnattr_setsigmask(&attr, &none)) != 0 ||
	    (e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF |
	    POSIX_SPAWN_SETSIGMASK)) != 0)
		fatalx("posix_spawn set-up: %s", strerror(e));
	e = posix_spawn(&pid, hp.worker_path, &fa, &attr, (char *const *)argv,
	    environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(sv[1]);
	if (e != 0) {
		close(sv[0]);
		errno = e;
		return -1;
	}
	if (sps.nworkers == sps.cap) {
		sps.cap = sps.cap == 0 ? 64 : sps.cap * 2;
		sps.workers = xreallocarray(sps.workers, sps.cap,
		    sizeof *sps.workers);
	}
	sps.workers[sps.nworkers++] = pid;
	*chan = sv[0];
	return pid;
}

/* A group we may signal: led by a child of one of our workers. */
static int
spawner_group_ok(pid_t worker, pid_t pgid)
{
	char	 path[64], buf[512], *p;
	int	 fd, ppid, pgrp;
	ssize_t	 n;

	if (pgid <= 1 || spawner_worker_index(worker) == -1)
		return 0;
	snprintf(path, sizeof path, "/proc/%ld/stat", (long)pgid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* pid (comm) state ppid pgrp: comm may hold anything, even ")". */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %d %d", &ppid, &pgrp) != 2)
		return 0;
	return ppid == worker && pgrp == pgid;
}

/*
 * pid, a child of parent when read, signalled through a pidfd opened while
 * it still is (never a recycled pid): 0, or -1 if it is not.
 */
static int
spawner_signal_child(pid_t parent, pid_t pid, int sig)
{
	int	fd, rc = -1;

	if ((fd = (int)syscall(SYS_pidfd_open, pid, 0)) == -1)
		return -1;
	if (proc_parent(pid) == parent &&
	    syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == 0)
		rc = 0;
	close(fd);
	return rc;
}

/*
 * A freeze (SIGSTOP) or thaw (SIGCONT) of a CLI reaches what its tools
 * left in sessions of their own (the real CLI runs each Bash command with
 * setsid), not only its group: every process under the worker, which is
 * their subreaper.  Parents first, each stopped before its children are
 * read: a stopped process forks no more.
 */
static void
spawner_signal_tree(pid_t worker, int sig)
{
	pid_t	todo[SPAWNER_TREE_MAX], parent[SPAWNER_TREE_MAX];
	size_t	n, i, k, got;

	n = proc_children_any(worker, todo, SPAWNER_TREE_MAX);
	for (i = 0; i < n; i++)
		parent[i] = worker;
	for (i = 0; i < n; i++) {
		if (spawner_signal_child(parent[i], todo[i], sig) == -1)
			continue;	/* gone, or no longer there */
		got = proc_children_threads(todo[i], todo + n,
		    SPAWNER_TREE_MAX - n);
		for (k = n; k < n + got; k++)
			parent[k] = todo[i];
		n += got;
	}
	if (n == SPAWNER_TREE_MAX)
		log_warnx("worker %ld: more than %d processes under it; the "
		    "rest not signalled", (long)worker, SPAWNER_TREE_MAX);
}

static int
spawner_sig_ok(int sig)
{
	return sig == SIGTERM || sig == SIGKILL || sig == SIGSTOP ||
	    sig == SIGCONT || sig == SIGINT;
}

/* 0, or an errno. */
static int
spawner_do_rmtmp(const struct spawner_req *r)
{
	char	path[PATH_MAX];
	int	e;

	if (memchr(r->name, '\0', sizeof r->name) == NULL ||
	    !proto_valid_session(r->name)) {
		log_warnx("RMTMP: not a session name");
		return EINVAL;
	}
	if ((size_t)snprintf(path, sizeof path, UTIL_TMPDIR_FMT,
	    sps.state_dir, (unsigned)r->uid, r->name) >= sizeof path)
		return ENAMETOOLONG;
	if (util_rmtree(path) == -1) {
		e = errno;
		log_warn("removing %s", path);
		return e;
	}
	return 0;
}

static void
spawner_queue_answer(const struct spawner_rep *rep)
{
	if (sps.nanswers == sps.acap) {
		sps.acap = sps.acap == 0 ? 64 : sps.acap * 2;
		sps.answers = xreallocarray(sps.answers, sps.acap,
		    sizeof *sps.answers);
	}
	sps.answers[sps.nanswers++] = *rep;
}

/*
 * Queued RMTMP answers, in order: as many as the channel takes now, or
 * (wait) all of them, when the master waits for an answer after them.
 * 0, or -1 when the master is gone.
 */
static int
spawner_flush_answers(int fd, int wait)
{
	size_t	i = 0;

	while (i < sps.nanswers) {
		if (send(fd, &sps.answers[i], sizeof sps.answers[i],
		    MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -1;
			break;
		}
		i++;
	}
	if (i == 0)
		return 0;	/* none sent (or none queued: answers NULL) */
	memmove(sps.answers, sps.answers + i, (sps.nanswers - i) *
	    sizeof *sps.answers);
	sps.nanswers -= i;
	return 0;
}

/*
 * 0, or -1: the master broke the protocol, or is gone.  SPAWN comes on
 * its own channel (spawn 1), nothing else does.
 */
static int
spawner_request(int fd, int spawn)
{
	struct spawner_req	r;
	struct spawner_rep	rep;
	ssize_t			n;
	int			passed, chan;

	n = spawner_recv_fd(fd, &r, sizeof r, &passed, 0);
	if (n == 0)
		return -1;			/* EOF: the master is gone */
	if (passed != -1)
		close(passed);			/* none is asked of it */
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n != (ssize_t)sizeof r) {
		log_warnx("a request of %zd bytes: ending", n);
		return -1;
	}
	memset(&rep, 0, sizeof rep);
	if ((r.type == SPAWNER_SPAWN) != spawn) {
		log_warnx("request type %u on the %s channel: ending", r.type,
		    spawn ? "spawn" : "request");
		return -1;
	}
	switch (r.type) {
	case SPAWNER_SPAWN:
		if (r.level > LOG_LVL_DEBUG) {
			log_warnx("SPAWN: log level %u", r.level);
			return -1;
		}
		if ((rep.pid = spawner_do_spawn(&r, &chan)) == -1)
			rep.err = errno;
		n = spawner_send_fd(fd, &rep, sizeof rep, chan);
		if (chan != -1)
			close(chan);
		return n == -1 ? -1 : 0;
	case SPAWNER_KILL:
		if (!spawner_sig_ok(r.sig) || spawner_worker_index(r.pid) == -1)
			log_warnx("KILL %d of %ld refused: not a live worker "
			    "or signal", r.sig, (long)r.pid);
		else if (kill(r.pid, r.sig) == -1)
			log_warn("kill %ld", (long)r.pid);
		return 0;
	case SPAWNER_KILLPG:
		if (!spawner_sig_ok(r.sig) || !spawner_group_ok(r.pid, r.pgid))
			log_debug("KILLPG %d of %ld refused: not a group of "
			    "worker %ld's", r.sig, (long)r.pgid, (long)r.pid);
		else if (kill(-r.pgid, r.sig) == -1)
			log_warn("kill group %ld", (long)r.pgid);
		else if (r.sig == SIGSTOP || r.sig == SIGCONT)
			spawner_signal_tree(r.pid, r.sig);
		return 0;
	case SPAWNER_RMTMP:
		rep.err = spawner_do_rmtmp(&r);
		spawner_queue_answer(&rep);
		return spawner_flush_answers(fd, 0);
	case SPAWNER_LOG:
		/* The master waits, reading the answers before this one. */
		if (spawner_flush_answers(fd, 1) == -1)
			return -1;
		if (log_reopen() == -1)
			rep.err = EIO;
		return spawner_send_fd(fd, &rep, sizeof rep, log_getfd() >
		    STDERR_FILENO ? log_getfd() : -1) == -1 ? -1 : 0;
	default:
		log_warnx("request type %u: ending", r.type);
		return -1;
	}
}

/*
 * We are a subreaper: what a dead worker left behind is our child now.
 * Anything that is not a worker is killed, and reaped as it dies.
 */
static void
spawner_sweep(void)
{
	static pid_t	kids[SPAWNER_SWEEP_MAX];
	size_t		n, i;

	sps.last_sweep_ms = util_now_ms();
	sps.sweep_due = 0;
	n = proc_children_any(getpid(), kids, SPAWNER_SWEEP_MAX);
	for (i = 0; i < n; i++) {
		if (spawner_worker_index(kids[i]) != -1)
			continue;
		log_warnx("killing process %ld left behind by a worker",
		    (long)kids[i]);
		kill(kids[i], SIGKILL);
	}
}

static void
spawner_reap(void)
{
	pid_t	pid;
	int	status;
	ssize_t	i;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid == 0 || (pid == -1 && errno == ECHILD))
			break;
		if (pid == -1) {
			if (errno == EINTR)
				continue;
			log_warn("waitpid");
			break;
		}
		if ((i = spawner_worker_index(pid)) == -1)
			continue;	/* swept */
		sps.workers[i] = sps.workers[--sps.nworkers];
		spawner_queue_exit(pid, status);
		sps.sweep_due = 1;
	}
}

/*
 * The master is gone: so is everything we started, and its socket.  The
 * workers get TERM, as from their parent-death signal: they end their
 * CLIs' groups and what escaped them (they are subreapers), which a KILL
 * would leave to init.
 */
static void __attribute__((noreturn))
spawner_end(void)
{
	size_t	i;

	for (i = 0; i < sps.nworkers; i++)
		kill(sps.workers[i], SIGTERM);
	if (sps.socket != NULL)
		unlink(sps.socket);
	if (sps.pidfile != NULL)
		unlink(sps.pidfile);
	_exit(0);
}

/* Every descriptor but ours, the channels and the log is closed. */
static void
spawner_close_fds(int keep1, int keep2, int keep3)
{
	DIR		*d;
	struct dirent	*de;
	int		 fd, logfd = log_getfd(), dfd;
	char		*end;
	long		 l;

	if ((d = opendir("/proc/self/fd")) == NULL)
		fatal("/proc/self/fd");
	dfd = dirfd(d);
	while ((de = readdir(d)) != NULL) {
		l = strtol(de->d_name, &end, 10);
		if (*end != '\0' || end == de->d_name || l < 0 || l > INT_MAX)
			continue;
		fd = (int)l;
		if (fd <= STDERR_FILENO || fd == keep1 || fd == keep2 ||
		    fd == keep3 || fd == logfd || fd == dfd)
			continue;
		close(fd);
	}
	closedir(d);
}

static void __attribute__((noreturn))
spawner_main(int req, int spawn, int exits)
{
	struct pollfd		 pfd[4];
	struct signalfd_siginfo	 si;
	sigset_t		 set;
	char			 err[SANDBOX_ERR_MAX];
	int			 sigfd, sig, timeout;
	uint64_t		 now;

	log_setrole("spawner");
	/* Named apart from the master and the gateway in ps and /proc. */
	if (prctl(PR_SET_NAME, SPAWNER_COMM) == -1)
		log_warn("PR_SET_NAME");
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		fatal("PR_SET_PDEATHSIG");
	if (getppid() == 1)
		_exit(0);
	/*
	 * It ends with the master, never with a signal to the process group
	 * (^C in the foreground, a service manager's TERM): the master
	 * drains its sessions first.
	 */
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD)
			signal(sig, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	spawner_close_fds(req, spawn, exits);
	/* Above the workers' fixed descriptors: dup2 never overwrites it. */
	if ((sps.bpf = sandbox_bpf_make(WORKER_BPF_FD + 1, err,
	    sizeof err)) == -1)
		log_warnx("%s: each worker compiles its seccomp filters", err);
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		log_warn("PR_SET_CHILD_SUBREAPER");
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1 ||
	    (sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("signalfd");
	util_set_nonblock(exits);

	for (;;) {
		pfd[0].fd = req;
		pfd[0].events = POLLIN | (sps.nanswers > 0 ? POLLOUT : 0);
		pfd[1].fd = sigfd;
		pfd[1].events = POLLIN;
		pfd[2].fd = exits;
		pfd[2].events = sps.nqueue > 0 ? POLLOUT : 0;
		pfd[3].fd = spawn;
		pfd[3].events = POLLIN;
		timeout = -1;
		if (sps.sweep_due) {
			now = util_now_ms();
			timeout = sps.last_sweep_ms + SPAWNER_SWEEP_MS > now ?
			    (int)(sps.last_sweep_ms + SPAWNER_SWEEP_MS - now) :
			    0;
		}
		if (poll(pfd, 4, timeout) == -1) {
			if (errno == EINTR)
				continue;
			fatal("poll");
		}
		if (pfd[1].revents & POLLIN) {
			while (read(sigfd, &si, sizeof si) == sizeof si)
				;
			spawner_reap();
		}
		if (sps.sweep_due && util_now_ms() >= sps.last_sweep_ms +
		    SPAWNER_SWEEP_MS)
			spawner_sweep();
		if (sps.nqueue > 0)
			spawner_flush_exits(exits);
		if (sps.nanswers > 0 && (pfd[0].revents & POLLOUT) &&
		    spawner_flush_answers(req, 0) == -1)
			spawner_end();
		if (pfd[2].revents & (POLLERR | POLLHUP))
			spawner_end();
		if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    spawner_request(req, 0) == -1)
			spawner_end();
		if ((pfd[3].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    spawner_request(spawn, 1) == -1)
			spawner_end();
	}
}

/* -- The master's side. -- */

/*
 * Forks the spawner; the master keeps one end of each channel.  After
 * daemon(), the listeners and the gateway, before any client is read.
 */
void
spawner_start(const char *pidfile)
{
	int	req[2], spawn[2], exits[2];
	pid_t	pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, req) == -1 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, spawn) ==
	    -1 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, exits) == -1)
		fatal("spawner socketpair");
	sps.state_dir = xstrdup(hp.conf->state_dir);
	sps.socket = xstrdup(hp.conf->socket);
	sps.pidfile = pidfile;
	if ((pid = fork()) == -1)
		fatal("fork spawner");
	if (pid == 0) {
		close(req[0]);
		close(spawn[0]);
		close(exits[0]);
		spawner_main(req[1], spawn[1], exits[1]);
	}
	free(sps.state_dir);
	free(sps.socket);
	sps.state_dir = sps.socket = NULL;
	close(req[1]);
	close(spawn[1]);
	close(exits[1]);
	sp.pid = pid;
	sp.req = req[0];
	sp.spawn = spawn[0];
	sp.exits = exits[0];
	util_set_nonblock(sp.exits);
	util_set_nonblock(sp.spawn);
	log_debug("spawner %ld", (long)pid);
}

pid_t
spawner_pid(void)
{
	return sp.pid;
}

int
spawner_exits_fd(void)
{
	return sp.exits;
}

/*
 * A request that has no answer.  The spawner reads them in order and
 * never blocks on us, so a blocking send is short.
 */
static void
spawner_send(struct spawner_req *r)
{
	if (sp.req == -1)
		return;
	if (spawner_send_fd(sp.req, r, sizeof *r, -1) == -1)
		log_warn("spawner request");
}

/* The next answer on the request channel (flags: MSG_DONTWAIT). */
static int
spawner_answer_next(struct spawner_rep *rep, int *fd, int flags)
{
	ssize_t	n;

	n = spawner_recv_fd(sp.req, rep, sizeof *rep, fd, flags);
	if (n != (ssize_t)sizeof *rep) {
		if (*fd != -1)
			close(*fd);
		*fd = -1;
		errno = n == -1 ? errno : EPIPE;
		return -1;
	}
	return 0;
}

static unsigned
spawner_rmtmp_bucket(uid_t uid, const char *name)
{
	uint32_t	h = 2166136261u ^ (uint32_t)uid;	/* FNV-1a */

	while (*name != '\0')
		h = (h ^ (unsigned char)*name++) * 16777619u;
	return h & (SPAWNER_RMTMP_BUCKETS - 1);
}

/* The oldest RMTMP's answer. */
static void
spawner_rmtmp_done(const struct spawner_rep *rep, int fd)
{
	struct spawner_rmtmp	*p;

	if (fd != -1)
		close(fd);
	if ((p = TAILQ_FIRST(&rm.q)) == NULL) {
		log_warnx("spawner: an answer nothing asked for");
		return;
	}
	TAILQ_REMOVE(&rm.q, p, entry);
	rm.count[p->bucket]--;
	if (rep->err != 0)
		log_warnx("session %s: removing its TMPDIR: %s", p->name,
		    strerror(rep->err));
	free(p);
}

/*
 * One pending RMTMP's answer, waited for; -1 when the spawner is gone
 * (its exit report ends us: nothing is pending any more).
 */
static int
spawner_rmtmp_wait(void)
{
	struct spawner_rep	rep;
	struct spawner_rmtmp	*p;
	int			fd;

	if (spawner_answer_next(&rep, &fd, 0) == 0) {
		spawner_rmtmp_done(&rep, fd);
		return 0;
	}
	log_warn("spawner answer");
	while ((p = TAILQ_FIRST(&rm.q)) != NULL) {
		TAILQ_REMOVE(&rm.q, p, entry);
		rm.count[p->bucket]--;
		free(p);
	}
	return -1;
}

/* The request channel is readable: answers to RMTMP, from the loop. */
static void
spawner_req_read(evutil_socket_t fd, short what, void *arg)
{
	struct spawner_rep	rep;
	int			chan, i;

	for (i = 0; i < SPAWNER_ANSWERS_MAX; i++) {
		if (spawner_answer_next(&rep, &chan, MSG_DONTWAIT) == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			/* The spawner is gone: its exit report ends us. */
			log_warn("spawner answer");
			event_del(rm.ev);
			return;
		}
		spawner_rmtmp_done(&rep, chan);
	}
}

/*
 * The answer to the request sent last (LOG), and the descriptor it
 * carries: the RMTMPs sent before it are answered first.
 */
static int
spawner_answer(struct spawner_rep *rep, int *fd)
{
	while (!TAILQ_EMPTY(&rm.q))
		if (spawner_rmtmp_wait() == -1)
			return -1;
	return spawner_answer_next(rep, fd, 0);
}

/*
 * The spawn channel is readable: each answer, in the order asked, goes to
 * the callback with the worker's pid and our end of its channel, or -1
 * and the errno.  EOF: the spawner is gone (its exit report ends us).
 */
static void
spawner_spawn_read(evutil_socket_t fd, short what, void *arg)
{
	struct spawner_rep	rep;
	ssize_t			n;
	int			chan, i;

	for (i = 0; i < SPAWNER_ANSWERS_MAX; i++) {
		memset(&rep, 0, sizeof rep);
		n = spawner_recv_fd(sp.spawn, &rep, sizeof rep, &chan, 0);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n == 0 || (n == -1 && errno != EMFILE)) {
			if (n == -1)
				log_warn("spawn answer");
			event_del(sp.spawn_ev);
			close(sp.spawn);
			sp.spawn = -1;
			hotplexd_spawner_lost();
			return;
		}
		if (n == -1)		/* its channel lost: no room for it */
			rep.err = EMFILE;
		else if (n != (ssize_t)sizeof rep)
			rep.err = EPROTO;
		if (rep.err != 0 || rep.pid <= 0 || chan == -1) {
			if (chan != -1)
				close(chan);
			/* A worker without its channel is of no use. */
			if (rep.pid > 0)
				spawner_kill(rep.pid, SIGKILL);
			sp.spawned(-1, -1, rep.err != 0 ? rep.err : EPROTO);
		} else
			sp.spawned(rep.pid, chan, 0);
	}
}

/*
 * Answers to SPAWN go to fn, from the loop (I/O priority: sessions wait
 * for them); those to RMTMP are bulk work.
 */
void
spawner_loop_init(struct event_base *base, void (*fn)(pid_t, int, int))
{
	sp.spawned = fn;
	if (sp.spawn == -1 || sp.req == -1)
		return;
	rm.ev = event_new(base, sp.req, EV_READ | EV_PERSIST,
	    spawner_req_read, NULL);
	if (rm.ev == NULL)
		fatalx("event_new");
	event_priority_set(rm.ev, HP_PRIO_BULK);
	event_add(rm.ev, NULL);
	sp.spawn_ev = event_new(base, sp.spawn, EV_READ | EV_PERSIST,
	    spawner_spawn_read, NULL);
	if (sp.spawn_ev == NULL)
		fatalx("event_new");
	event_priority_set(sp.spawn_ev, HP_PRIO_IO);
	event_add(sp.spawn_ev, NULL);
}

/*
 * Asks for a new worker; the answer comes to the spawned callback.  0, or
 * -1 with errno (the spawner is gone).  The spawner answers each request
 * before it reads the next and the master bounds how many it asks at
 * once, so a blocking send is short.
 */
int
spawner_spawn(int level, int json)
{
	struct spawner_req	r;

	memset(&r, 0, sizeof r);
	r.type = SPAWNER_SPAWN;
	r.level = (uint32_t)level;
	r.json = json != 0;
	if (sp.spawn == -1) {
		errno = EPIPE;
		return -1;
	}
	return spawner_send_fd(sp.spawn, &r, sizeof r, -1);
}

void
spawner_kill(pid_t worker, int sig)
{
	struct spawner_req	r;

	memset(&r, 0, sizeof r);
	r.type = SPAWNER_KILL;
	r.pid = worker;
	r.sig = sig;
	spawner_send(&r);
}

/* The process group of worker's CLI (its leader is the CLI). */
void
spawner_killpg(pid_t worker, pid_t pgid, int sig)
{
	struct spawner_req	r;

	memset(&r, 0, sizeof r);
	r.type = SPAWNER_KILLPG;
	r.pid = worker;
	r.pgid = pgid;
	r.sig = sig;
	spawner_send(&r);
}

/*
 * A session's TMPDIR removed: asked, the answer taken from the loop.  0,
 * or -1 with errno if it could not be asked.
 */
int
spawner_rmtmp(uid_t uid, const char *name)
{
	struct spawner_req	 r;
	struct spawner_rmtmp	*p;

	memset(&r, 0, sizeof r);
	r.type = SPAWNER_RMTMP;
	r.uid = uid;
	if (strlen(name) >= sizeof r.name) {
		errno = ENAMETOOLONG;
		return -1;
	}
	snprintf(r.name, sizeof r.name, "%s", name);
	if (sp.req == -1) {
		errno = EPIPE;
		return -1;
	}
	if (spawner_send_fd(sp.req, &r, sizeof r, -1) == -1)
		return -1;
	p = xcalloc(1, sizeof *p);
	p->bucket = spawner_rmtmp_bucket(uid, name);
	snprintf(p->name, sizeof p->name, "%s", name);
	TAILQ_INSERT_TAIL(&rm.q, p, entry);
	rm.count[p->bucket]++;
	return 0;
}

/*
 * A new worker is about to make the session's TMPDIR: a removal of the
 * old one still pending is waited for (rare: the session came back at
 * once).  A bucket shared with another name only waits a little more.
 */
void
spawner_rmtmp_settle(uid_t uid, const char *name)
{
	unsigned	b = spawner_rmtmp_bucket(uid, name);

	while (rm.count[b] > 0)
		if (spawner_rmtmp_wait() == -1)
			return;
}

/*
 * The log file reopened by the spawner (which may open it); the master
 * writes to the descriptor it gets.  0, or -1 if it could not.
 */
int
spawner_log_reopen(void)
{
	struct spawner_req	r;
	struct spawner_rep	rep;
	int			fd;

	memset(&r, 0, sizeof r);
	r.type = SPAWNER_LOG;
	if (sp.req == -1 || spawner_send_fd(sp.req, &r, sizeof r, -1) == -1 ||
	    spawner_answer(&rep, &fd) == -1)
		return -1;
	if (fd != -1)
		log_setfd(fd);
	return rep.err == 0 ? 0 : -1;
}

/*
 * Up to max exits, each given to fn (the rest wait for the next call: the
 * channel stays readable); 0, or -1 when the spawner is gone (EOF).
 */
int
spawner_read_exits(void (*fn)(pid_t, int), int max)
{
	struct spawner_exit	e;
	ssize_t			n;
	int			i;

	for (i = 0; i < max; i++) {
		n = recv(sp.exits, &e, sizeof e, MSG_DONTWAIT);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n == 0 || n == -1)
			return -1;
		if (n != (ssize_t)sizeof e)
			continue;
		fn(e.pid, e.status);
	}
	return 0;
}

/* The master reaped pid: 1 if that was the spawner. */
int
spawner_reaped(pid_t pid, int status)
{
	if (pid != sp.pid || sp.pid == -1)
		return 0;
	sp.pid = -1;
	if (WIFSIGNALED(status))
		log_warnx("spawner killed by signal %d", WTERMSIG(status));
	else
		log_warnx("spawner exited with status %d", WEXITSTATUS(status));
	return 1;
}

/* At exit: the spawner sees EOF, ends, and is waited for. */
void
spawner_stop(void)
{
	struct spawner_rmtmp	*p;
	int			 status;

	if (sp.spawn_ev != NULL)
		event_free(sp.spawn_ev);
	sp.spawn_ev = NULL;
	if (rm.ev != NULL)
		event_free(rm.ev);
	rm.ev = NULL;
	while ((p = TAILQ_FIRST(&rm.q)) != NULL) {
		TAILQ_REMOVE(&rm.q, p, entry);
		rm.count[p->bucket]--;
		free(p);
	}
	if (sp.req != -1)
		close(sp.req);
	if (sp.spawn != -1)
		close(sp.spawn);
	if (sp.exits != -1)
		close(sp.exits);
	sp.req = sp.spawn = sp.exits = -1;
	if (sp.pid != -1)
		while (waitpid(sp.pid, &status, 0) == -1 && errno == EINTR)
			;
	sp.pid = -1;
}
