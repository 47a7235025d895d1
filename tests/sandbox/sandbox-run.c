/*
 * sandbox-run: runs a program inside the CLI sandbox, as hotplex-worker
 * spawns the CLI (setsid, parent-death signal, sandbox_child(), exec).
 *
 *	sandbox-run [-D] [-w workdir] [-t tmpdir] [-c config_dir]
 *	    [-r rx_path]... [-W rw_path]... [-u user|uid] [-g gid]
 *	    [-L off|best-effort|required] [-s seccomp.profile]
 *	    [-n nofile] [-p nproc] [-C cpu_s] [-f fsize] [-e NAME=VALUE]...
 *	    -- program [arg...]
 *
 * -D starts a decoy outside the sandbox, with the same uid as the program:
 * a process listening on an abstract unix socket, for the escape tests
 * (its pid and socket name are exported as SANDBOX_DECOY_PID and
 * SANDBOX_DECOY_SOCK).  -t also sets TMPDIR.  The launcher is a child
 * subreaper and kills and reaps every process left when the program
 * ends.  Exit status: the program's, 128+signal if it was killed, 125 if
 * the sandbox could not be applied, 126/127 if exec failed.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "policy/sandbox/sandbox.h"

#define RUN_PATHS_MAX	16	/* -r and -W each */
#define RUN_ENV_MAX	16	/* -e */
#define RUN_EXIT_SANDBOX 125
#define RUN_EXIT_NOEXEC	126
#define RUN_EXIT_NOENT	127
#define RUN_SIGBASE	128
#define RUN_REAP_NS	10000000L	/* 10 ms between reaping scans */
#define RUN_STAT_MAX	512	/* bytes of /proc/PID/stat we read */

static const char *run_prog = "sandbox-run";

static void __attribute__((noreturn))
run_usage(void)
{
	fprintf(stderr, "usage: %s [-D] [-w workdir] [-t tmpdir] "
	    "[-c config_dir] [-r rx_path] [-W rw_path] [-u user] [-g gid] "
	    "[-L off|best-effort|required] [-s profile] [-n nofile] "
	    "[-p nproc] [-C cpu] [-f fsize] [-e NAME=VALUE] -- program "
	    "[arg...]\n", run_prog);
	exit(2);
}

static void __attribute__((noreturn))
run_die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", run_prog, what, strerror(errno));
	exit(RUN_EXIT_SANDBOX);
}

static rlim_t
run_number(const char *s)
{
	char			*end;
	unsigned long long	 v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0)
		run_usage();
	return (rlim_t)v;
}

/* Writes all of buf, from a child where stdio is not to be trusted. */
static void
run_write(int fd, const char *buf)
{
	size_t	len = strlen(buf);
	ssize_t	n;

	while (len > 0 && (n = write(fd, buf, len)) > 0) {
		buf += n;
		len -= (size_t)n;
	}
}

static void
run_become(uid_t uid, gid_t gid)
{
	if (setgroups(0, NULL) == -1 || setresgid(gid, gid, gid) == -1 ||
	    setresuid(uid, uid, uid) == -1)
		_exit(RUN_EXIT_SANDBOX);
}

/*
 * The decoy: outside the sandbox, same uid, listening on an abstract
 * socket.  Tells the parent it is ready by closing the pipe.
 */
static pid_t
run_decoy(int drop, uid_t uid, gid_t gid, char *name, size_t namelen)
{
	struct sockaddr_un	sun;
	int			p[2], s;
	char			c;
	pid_t			pid;

	snprintf(name, namelen, "hotplex-sandbox-decoy-%ld", (long)getpid());
	if (pipe2(p, O_CLOEXEC) == -1)
		run_die("pipe");
	if ((pid = fork()) == -1)
		run_die("fork");
	if (pid == 0) {
		close(p[0]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
			_exit(RUN_EXIT_SANDBOX);
		if (drop)
			run_become(uid, gid);
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		memcpy(sun.sun_path + 1, name, strlen(name));
		if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) == -1 ||
		    bind(s, (struct sockaddr *)&sun, (socklen_t)(
		    offsetof(struct sockaddr_un, sun_path) + 1 +
		    strlen(name))) == -1 || listen(s, 1) == -1)
			_exit(RUN_EXIT_SANDBOX);
		close(p[1]);
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 0)
		run_die("decoy");
	close(p[0]);
	return pid;
}

/* Kills every child of ours, that is every orphan handed to us. */
static void
run_kill_children(void)
{
	DIR		*d;
	struct dirent	*de;
	char		 path[PATH_MAX], buf[RUN_STAT_MAX], *p;
	long		 ppid;
	ssize_t		 n;
	int		 fd;

	if ((d = opendir("/proc")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		/* "pid (comm) state ppid ...": comm may hold anything. */
		if ((p = strrchr(buf, ')')) == NULL ||
		    sscanf(p + 1, " %*c %ld", &ppid) != 1)
			continue;
		if (ppid == (long)getpid())
			kill((pid_t)atol(de->d_name), SIGKILL);
	}
	closedir(d);
}

int
main(int argc, char *argv[])
{
	struct sandbox_conf	 sc;
	const char		*rx[RUN_PATHS_MAX + 1], *rw[RUN_PATHS_MAX + 1];
	char			*envs[RUN_ENV_MAX + 1];
	char			 err[SANDBOX_ERR_MAX], buf[SANDBOX_ERR_MAX];
	char			 decoy_name[64], num[32];
	struct passwd		*pw;
	size_t			 nrx = 0, nrw = 0, nenv = 0, i;
	ssize_t			 n;
	pid_t			 pid, decoy = -1, w;
	int			 ch, decoy_wanted = 0, p[2], status, rc, gid_set = 0;

	const struct timespec	 reap_pause = { 0, RUN_REAP_NS };

	memset(&sc, 0, sizeof sc);
	sc.landlock = SANDBOX_LANDLOCK_BEST_EFFORT;
	while ((ch = getopt(argc, argv, "C:Dc:e:f:g:L:n:p:r:s:t:u:W:w:")) !=
	    -1) {
		switch (ch) {
		case 'C': sc.cpu = run_number(optarg); break;
		case 'D': decoy_wanted = 1; break;
		case 'c': sc.config_dir = optarg; break;
		case 'e':
			if (nenv == RUN_ENV_MAX || strchr(optarg, '=') == NULL)
				run_usage();
			envs[nenv++] = optarg;
			break;
		case 'f': sc.fsize = run_number(optarg); break;
		case 'g': sc.gid = (gid_t)run_number(optarg); gid_set = 1;
			break;
		case 'L':
			if (strcmp(optarg, "off") == 0)
				sc.landlock = SANDBOX_LANDLOCK_OFF;
			else if (strcmp(optarg, "best-effort") == 0)
				sc.landlock = SANDBOX_LANDLOCK_BEST_EFFORT;
			else if (strcmp(optarg, "required") == 0)
				sc.landlock = SANDBOX_LANDLOCK_REQUIRED;
			else
				run_usage();
			break;
		case 'n': sc.nofile = run_number(optarg); break;
		case 'p': sc.nproc = run_number(optarg); break;
		case 'r':
			if (nrx == RUN_PATHS_MAX)
				run_usage();
			rx[nrx++] = optarg;
			break;
		case 's': sc.seccomp_profile = optarg; break;
		case 't': sc.tmpdir = optarg; break;
		case 'u':
			if ((pw = getpwnam(optarg)) != NULL) {
				sc.uid = pw->pw_uid;
				if (!gid_set)
					sc.gid = pw->pw_gid;
			} else
				sc.uid = (uid_t)run_number(optarg);
			sc.drop_privs = 1;
			break;
		case 'W':
			if (nrw == RUN_PATHS_MAX)
				run_usage();
			rw[nrw++] = optarg;
			break;
		case 'w': sc.workdir = optarg; break;
		default: run_usage();
		}
	}
	argv += optind;
	if (argv[0] == NULL)
		run_usage();
	rx[nrx] = NULL;
	rw[nrw] = NULL;
	envs[nenv] = NULL;
	sc.rx_paths = rx;
	sc.rw_paths = rw;
	if (sc.workdir == NULL)
		sc.workdir = ".";
	if (sc.drop_privs && sc.gid == 0)
		sc.gid = (gid_t)sc.uid;

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) == -1)
		run_die("subreaper");
	if (decoy_wanted) {
		decoy = run_decoy(sc.drop_privs, sc.uid, sc.gid, decoy_name,
		    sizeof decoy_name);
		snprintf(num, sizeof num, "%ld", (long)decoy);
		if (setenv("SANDBOX_DECOY_PID", num, 1) == -1 ||
		    setenv("SANDBOX_DECOY_SOCK", decoy_name, 1) == -1)
			run_die("setenv");
	}
	for (i = 0; i < nenv; i++)
		if (putenv(envs[i]) != 0)
			run_die("putenv");
	if (sc.tmpdir != NULL && setenv("TMPDIR", sc.tmpdir, 1) == -1)
		run_die("setenv");

	if (pipe2(p, O_CLOEXEC) == -1)
		run_die("pipe");
	fflush(NULL);
	if ((pid = fork()) == -1)
		run_die("fork");
	if (pid == 0) {
		pid_t	parent = getppid();

		close(p[0]);
		if (setsid() == -1 ||
		    prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() != parent) {
			run_write(p[1], "setsid/pdeathsig failed");
			_exit(RUN_EXIT_SANDBOX);
		}
		if (sandbox_child(&sc, err, sizeof err) == -1) {
			run_write(p[1], err);
			_exit(RUN_EXIT_SANDBOX);
		}
		if (err[0] != '\0') {
			run_write(STDERR_FILENO, "sandbox-run: warning: ");
			run_write(STDERR_FILENO, err);
			run_write(STDERR_FILENO, "\n");
		}
		/* Everything above 2 closes on exec, the error pipe too. */
		if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == -1) {
			run_write(p[1], "close_range failed");
			_exit(RUN_EXIT_SANDBOX);
		}
		execvp(argv[0], argv);
		rc = errno == ENOENT ? RUN_EXIT_NOENT : RUN_EXIT_NOEXEC;
		run_write(p[1], "exec ");
		run_write(p[1], argv[0]);
		run_write(p[1], ": ");
		run_write(p[1], strerror(errno));
		_exit(rc);
	}
	close(p[1]);
	n = read(p[0], buf, sizeof buf - 1);
	close(p[0]);
	if (n > 0) {
		buf[n] = '\0';
		fprintf(stderr, "%s: %s\n", run_prog, buf);
	}

	while ((w = waitpid(pid, &status, 0)) == -1 && errno == EINTR)
		;
	if (w == -1)
		run_die("waitpid");
	if (WIFEXITED(status))
		rc = WEXITSTATUS(status);
	else
		rc = RUN_SIGBASE + WTERMSIG(status);

	/* Nothing outlives the run: the decoy, the program's group, and
	 * whatever re-parented to us. */
	if (decoy != -1)
		kill(decoy, SIGKILL);
	kill(-pid, SIGKILL);
	for (;;) {
		run_kill_children();
		if ((w = waitpid(-1, NULL, WNOHANG)) == -1 && errno == ECHILD)
			break;
		/* An orphan may reach us between the scan and the wait:
		 * scan again soon rather than block. */
		if (w == 0)
			nanosleep(&reap_pause, NULL);	/* not a bound */
	}
	return rc;
}
