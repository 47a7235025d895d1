/*
 * Seccomp filters through libseccomp: the CLI child's, from a profile
 * (policy/sandbox/seccomp.profile, compiled into the binary at build time
 * as sandbox_seccomp_builtin_profile; a file may replace it), and the
 * worker's own, built here.
 *
 * Profile syntax, one statement a line, '#' starts a comment:
 *
 *	default ACTION			first statement, once
 *	SYSCALL ACTION [COND ...]	conditions of a line are ANDed,
 *					lines for one syscall are ORed
 *
 *	ACTION	allow | log | kill | errno:NAME	(errno:EPERM, errno:ENOSYS...)
 *	COND	argN==V argN!=V argN<V argN<=V argN>V argN>=V argN&MASK==V
 *	V, MASK	numbers (C syntax) or names from seccomp_names[], joined by |
 *
 * Calls from another architecture than the native one kill the process,
 * and the kernel logs every action but allow where it can (CTL_LOG).
 */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/sandbox/sandbox.h"

#define SECCOMP_PROFILE_MAX	(64 * 1024)	/* bytes in a profile */
#define SECCOMP_TOKENS_MAX	8		/* syscall, action, 6 conds */
#define SECCOMP_COND_MAX	(SECCOMP_TOKENS_MAX - 2)
#define SECCOMP_ARG_MAX		5		/* arg0..arg5 */
#define SECCOMP_SYSNR_MAX	1024		/* highest native nr scanned */
#define SECCOMP_LOG_API		3		/* first API level with CTL_LOG */
#define SECCOMP_U32		0xffffffffULL
#define SECCOMP_OPTIMIZE_TREE	2		/* SCMP_FLTATR_CTL_OPTIMIZE */

#ifndef SOCK_TYPE_MASK
#define SOCK_TYPE_MASK		0xf
#endif

static const struct {
	const char	*name;
	uint64_t	 value;
} seccomp_names[] = {
	{ "CLONE_NEWNS",	CLONE_NEWNS },
	{ "CLONE_NEWCGROUP",	CLONE_NEWCGROUP },
	{ "CLONE_NEWUTS",	CLONE_NEWUTS },
	{ "CLONE_NEWIPC",	CLONE_NEWIPC },
	{ "CLONE_NEWUSER",	CLONE_NEWUSER },
	{ "CLONE_NEWPID",	CLONE_NEWPID },
	{ "CLONE_NEWNET",	CLONE_NEWNET },
	{ "CLONE_THREAD",	CLONE_THREAD },
	{ "AF_UNIX",		AF_UNIX },
	{ "AF_INET",		AF_INET },
	{ "AF_INET6",		AF_INET6 },
	{ "AF_NETLINK",		AF_NETLINK },
	{ "AF_PACKET",		AF_PACKET },
	{ "SOCK_TYPE_MASK",	SOCK_TYPE_MASK },
	{ "SOCK_RAW",		SOCK_RAW },
	{ "SOCK_PACKET",	SOCK_PACKET },
	{ "TIOCSTI",		TIOCSTI },
	{ "TIOCLINUX",		TIOCLINUX },
	{ "U32",		SECCOMP_U32 },
	{ "O_ACCMODE",		O_ACCMODE },
	{ "O_WRONLY",		O_WRONLY },
	{ "O_RDWR",		O_RDWR },
	{ "O_CREAT",		O_CREAT },
	{ "O_TRUNC",		O_TRUNC },
};

static const struct {
	const char	*name;
	int		 value;
} seccomp_errnos[] = {
	{ "EPERM",		EPERM },
	{ "EACCES",		EACCES },
	{ "ENOSYS",		ENOSYS },
	{ "EINVAL",		EINVAL },
	{ "EAFNOSUPPORT",	EAFNOSUPPORT },
	{ "EPROTONOSUPPORT",	EPROTONOSUPPORT },
	{ "EOPNOTSUPP",		EOPNOTSUPP },
};

static int
seccomp_value(const char *s, uint64_t *v)
{
	char		 term[64], *end;
	const char	*bar;
	size_t		 len, i;

	*v = 0;
	for (;;) {
		bar = strchr(s, '|');
		len = bar != NULL ? (size_t)(bar - s) : strlen(s);
		if (len == 0 || len >= sizeof term)
			return -1;
		memcpy(term, s, len);
		term[len] = '\0';
		errno = 0;
		if (term[0] >= '0' && term[0] <= '9') {
			unsigned long long n = strtoull(term, &end, 0);

			if (*end != '\0' || errno != 0)
				return -1;
			*v |= n;
		} else {
			for (i = 0; i < sizeof seccomp_names /
			    sizeof seccomp_names[0]; i++)
				if (strcmp(term, seccomp_names[i].name) == 0)
					break;
			if (i == sizeof seccomp_names / sizeof seccomp_names[0])
				return -1;
			*v |= seccomp_names[i].value;
		}
		if (bar == NULL)
			return 0;
		s = bar + 1;
	}
}

static int
seccomp_action(const char *s, uint32_t *act)
{
	size_t	i;

	if (strcmp(s, "allow") == 0)
		*act = SCMP_ACT_ALLOW;
	else if (strcmp(s, "log") == 0)
		*act = SCMP_ACT_LOG;
	else if (strcmp(s, "kill") == 0)
		*act = SCMP_ACT_KILL_PROCESS;
	else if (strncmp(s, "errno:", 6) == 0) {
		for (i = 0; i < sizeof seccomp_errnos /
		    sizeof seccomp_errnos[0]; i++)
			if (strcmp(s + 6, seccomp_errnos[i].name) == 0)
				break;
		if (i == sizeof seccomp_errnos / sizeof seccomp_errnos[0])
			return -1;
		*act = SCMP_ACT_ERRNO(seccomp_errnos[i].value);
	} else
		return -1;
	return 0;
}

/* "arg1&SOCK_TYPE_MASK==SOCK_RAW", "arg0==AF_PACKET" ... */
static int
seccomp_cond(const char *s, struct scmp_arg_cmp *c)
{
	static const struct {
		const char		*op;
		enum scmp_compare	 cmp;
	} ops[] = {	/* longest first */
		{ "==", SCMP_CMP_EQ }, { "!=", SCMP_CMP_NE },
		{ "<=", SCMP_CMP_LE }, { ">=", SCMP_CMP_GE },
		{ "<", SCMP_CMP_LT }, { ">", SCMP_CMP_GT },
	};
	char		 lhs[64];
	const char	*p, *amp;
	size_t		 i, len;
	uint64_t	 mask;

	if (strncmp(s, "arg", 3) != 0 || s[3] < '0' ||
	    s[3] > '0' + SECCOMP_ARG_MAX)
		return -1;
	memset(c, 0, sizeof *c);
	c->arg = (unsigned int)(s[3] - '0');
	p = s + 4;
	if (*p == '&') {
		/* The mask runs to the "==". */
		amp = strstr(p, "==");
		if (amp == NULL || (len = (size_t)(amp - p - 1)) == 0 ||
		    len >= sizeof lhs)
			return -1;
		memcpy(lhs, p + 1, len);
		lhs[len] = '\0';
		if (seccomp_value(lhs, &mask) == -1)
			return -1;
		c->op = SCMP_CMP_MASKED_EQ;
		c->datum_a = mask;
		return seccomp_value(amp + 2, &c->datum_b);
	}
	for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		len = strlen(ops[i].op);
		if (strncmp(p, ops[i].op, len) == 0) {
			c->op = ops[i].cmp;
			return seccomp_value(p + len, &c->datum_a);
		}
	}
	return -1;
}

/*
 * policy/sandbox/seccomp.profile as a string
 * ($(B)/policy/sandbox/seccomp-builtin.c).
 */
extern const char sandbox_seccomp_builtin_profile[];

static int
seccomp_read(const char *path, char *buf, size_t bufsz, char *err,
    size_t errlen)
{
	size_t	len = 0;
	ssize_t	n;
	int	fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "seccomp: %s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = read(fd, buf + len, bufsz - 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (n == -1 || len == bufsz - 1) {
		snprintf(err, errlen, "seccomp: %s: %s", path,
		    n == -1 ? strerror(errno) : "profile too large");
		return -1;
	}
	buf[len] = '\0';
	return 0;
}

/* Common attributes: kill other architectures, log non-allow actions. */
static int
seccomp_attrs(scmp_filter_ctx ctx, char *err, size_t errlen)
{
	int	rc;

	/*
	 * Where libseccomp cannot tell that the kernel kills whole processes
	 * (before 4.14, or under valgrind, which hides the seccomp syscall),
	 * the thread is killed: the call still never runs.
	 */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
	    SCMP_ACT_KILL_PROCESS)) != 0 && (rc = seccomp_attr_set(ctx,
	    SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL)) != 0) {
		snprintf(err, errlen, "seccomp: bad-arch action: %s",
		    strerror(-rc));
		return -1;
	}
	if (seccomp_api_get() >= SECCOMP_LOG_API &&
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1)) != 0) {
		snprintf(err, errlen, "seccomp: log attribute: %s",
		    strerror(-rc));
		return -1;
	}
	return 0;
}

/*
 * Parses a profile into a libseccomp filter, not loaded: the file at path,
 * or the built-in one when path is SANDBOX_SECCOMP_BUILTIN.  Returns NULL
 * with a message ("path:line: what") in err.
 */
void *
sandbox_seccomp_profile_compile(const char *path, char *err, size_t errlen)
{
	static char		 buf[SECCOMP_PROFILE_MAX];
	struct scmp_arg_cmp	 conds[SECCOMP_COND_MAX];
	scmp_filter_ctx		 ctx = NULL;
	char			*line, *next, *tok[SECCOMP_TOKENS_MAX + 1];
	char			*save, *hash;
	uint32_t		 act;
	unsigned int		 lineno = 0, ntok, i;
	int			 nr, rc;

	if (strcmp(path, SANDBOX_SECCOMP_BUILTIN) == 0) {
		if (strlen(sandbox_seccomp_builtin_profile) >= sizeof buf) {
			snprintf(err, errlen, "seccomp: built-in profile too "
			    "large");
			return NULL;
		}
		strcpy(buf, sandbox_seccomp_builtin_profile);
	} else if (seccomp_read(path, buf, sizeof buf, err, errlen) == -1)
		return NULL;
	for (line = buf; line != NULL; line = next) {
		lineno++;
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		ntok = 0;
		for (tok[0] = strtok_r(line, " \t\r", &save); tok[ntok] != NULL;
		    tok[ntok] = strtok_r(NULL, " \t\r", &save))
			if (++ntok > SECCOMP_TOKENS_MAX)
				break;
		if (ntok == 0)
			continue;
		if (ntok > SECCOMP_TOKENS_MAX) {
			snprintf(err, errlen, "%s:%u: too many conditions",
			    path, lineno);
			goto fail;
		}
		if (ntok < 2 || seccomp_action(tok[1], &act) == -1) {
			snprintf(err, errlen, "%s:%u: expected a syscall and "
			    "an action", path, lineno);
			goto fail;
		}
		if (strcmp(tok[0], "default") == 0) {
			if (ctx != NULL || ntok != 2) {
				snprintf(err, errlen, "%s:%u: \"default\" must "
				    "come once, first", path, lineno);
				goto fail;
			}
			if ((ctx = seccomp_init(act)) == NULL) {
				snprintf(err, errlen, "seccomp: init failed");
				return NULL;
			}
			if (seccomp_attrs(ctx, err, errlen) == -1)
				goto fail;
			continue;
		}
		if (ctx == NULL) {
			snprintf(err, errlen, "%s:%u: \"default\" must come "
			    "first", path, lineno);
			goto fail;
		}
		if ((nr = seccomp_syscall_resolve_name(tok[0])) ==
		    __NR_SCMP_ERROR) {
			snprintf(err, errlen, "%s:%u: unknown syscall %s",
			    path, lineno, tok[0]);
			goto fail;
		}
		for (i = 2; i < ntok; i++)
			if (seccomp_cond(tok[i], &conds[i - 2]) == -1) {
				snprintf(err, errlen, "%s:%u: bad condition %s",
				    path, lineno, tok[i]);
				goto fail;
			}
		if ((rc = seccomp_rule_add_array(ctx, act, nr, ntok - 2,
		    conds)) != 0) {
			snprintf(err, errlen, "%s:%u: %s: %s", path, lineno,
			    tok[0], rc == -EACCES ? "action is the default" :
			    strerror(-rc));
			goto fail;
		}
	}
	if (ctx == NULL)
		snprintf(err, errlen, "%s: no \"default\" statement", path);
	return ctx;

fail:
	if (ctx != NULL)
		seccomp_release(ctx);
	return NULL;
}

int
sandbox_seccomp_filter_load(void *filter, char *err, size_t errlen)
{
	int	rc;

	if ((rc = seccomp_load(filter)) != 0) {
		snprintf(err, errlen, "seccomp: load: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

void
sandbox_seccomp_filter_free(void *filter)
{
	if (filter != NULL)
		seccomp_release(filter);
}

int
sandbox_seccomp_check(const char *path, char *err, size_t errlen)
{
	void	*f;

	if ((f = sandbox_seccomp_profile_compile(path, err, errlen)) == NULL)
		return -1;
	sandbox_seccomp_filter_free(f);
	return 0;
}

/*
 * The worker's own filter.  It is an allow-list of every syscall the
 * native table knows but the ones below, so that kill() can be allowed for
 * chosen targets only; syscalls unknown to libseccomp fail with ENOSYS
 * (what glibc expects of a kernel that lacks them), and so do signals to
 * other targets.
 */
static const char *const seccomp_worker_deny[] = {
	/* No new programs or processes (threads stay possible). */
	"execve", "execveat", "fork", "vfork",
	/* No new network endpoints (AF_UNIX stays, for syslog). */
	"bind", "listen",
	/* No filesystem changes by path. */
	"creat", "truncate", "unlink", "unlinkat", "rename", "renameat",
	"renameat2", "mkdir", "mkdirat", "rmdir", "link", "linkat",
	"symlink", "symlinkat", "chmod", "fchmodat", "chown", "lchown",
	"fchownat", "mknod", "mknodat", "utime", "utimes", "futimesat",
	/* No identity changes. */
	"setuid", "setgid", "setreuid", "setregid", "setresuid",
	"setresgid", "setgroups", "setfsuid", "setfsgid", "capset",
	/* What the CLI may not do either. */
	"ptrace", "process_vm_readv", "process_vm_writev", "mount",
	"umount2", "pivot_root", "chroot", "unshare", "setns", "fsopen",
	"fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
	"mount_setattr", "init_module", "finit_module", "delete_module",
	"kexec_load", "kexec_file_load", "bpf", "perf_event_open",
	"userfaultfd", "keyctl", "add_key", "request_key", "pidfd_getfd",
	"open_by_handle_at", "reboot", "swapon", "swapoff", "acct",
	"settimeofday", "clock_settime", "clock_adjtime", "syslog",
	"iopl", "ioperm", "quotactl",
};

/* Denied with ENOSYS so that glibc falls back to what we can inspect. */
static const char *const seccomp_worker_nosys[] = {
	"clone3", "openat2", "io_uring_setup", "io_uring_enter",
	"io_uring_register",
};

static int
seccomp_in(const char *name, const char *const *list, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(name, list[i]) == 0)
			return 1;
	return 0;
}

#define NELEM(a)	(sizeof (a) / sizeof (a)[0])

/*
 * LeakSanitizer stops the world at exit with a non-thread clone and
 * ptrace: sanitizer builds (make check-asan) keep both.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SECCOMP_SANITIZER	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SECCOMP_SANITIZER	1
#endif
#endif
#ifndef SECCOMP_SANITIZER
#define SECCOMP_SANITIZER	0
#endif

/*
 * kill(2) to the CLI (cli_pid), its group and ourselves only: the one part
 * of the worker's filter that waits for the CLI.
 */
static int
seccomp_worker_kill(scmp_filter_ctx ctx, pid_t cli_pid, char *err,
    size_t errlen)
{
	const uint64_t	pids[] = { (uint32_t)cli_pid, (uint32_t)-cli_pid,
			    (uint32_t)getpid() };
	size_t		i;
	int		rc = 0;

	for (i = 0; i < NELEM(pids) && rc == 0; i++)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
		    SCMP_A0(SCMP_CMP_MASKED_EQ, SECCOMP_U32, pids[i]));
	if (rc != 0)
		snprintf(err, errlen, "seccomp: worker rule kill: %s",
		    strerror(-rc));
	return rc == 0 ? 0 : -1;
}

/* Every rule but kill's (seccomp_worker_kill). */
static int
seccomp_worker_rules(scmp_filter_ctx ctx, char *err, size_t errlen)
{
	const uint32_t	arch = seccomp_arch_native();
	const char	*name;
	char		*freeme;
	int		 nr, rc = 0;

	for (nr = 0; nr < SECCOMP_SYSNR_MAX && rc == 0; nr++) {
		if ((freeme = seccomp_syscall_resolve_num_arch(arch, nr)) ==
		    NULL)
			continue;
		name = freeme;
		if (seccomp_in(name, seccomp_worker_nosys,
		    NELEM(seccomp_worker_nosys)))
			;	/* left to the default, ENOSYS */
		else if (SECCOMP_SANITIZER && (strcmp(name, "ptrace") == 0 ||
		    strcmp(name, "clone") == 0))
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		else if (seccomp_in(name, seccomp_worker_deny,
		    NELEM(seccomp_worker_deny)))
			rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr,
			    0);
		else if (strcmp(name, "kill") == 0)
			;	/* seccomp_worker_kill, once the CLI runs */
		else if (strcmp(name, "clone") == 0) {
			/* Threads only. */
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
			    SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD,
			    CLONE_THREAD));
		} else if (strcmp(name, "socket") == 0) {
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
			    SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0));
		} else if (strcmp(name, "open") == 0 ||
		    strcmp(name, "openat") == 0) {
			/* Read-only opens: no O_WRONLY/O_RDWR/O_CREAT/O_TRUNC
			 * (the flags are arg1 of open, arg2 of openat). */
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
			    SCMP_CMP(strcmp(name, "open") == 0 ? 1 : 2,
			    SCMP_CMP_MASKED_EQ,
			    O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY));
		} else
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc != 0)
			snprintf(err, errlen, "seccomp: worker rule %s: %s",
			    name, strerror(-rc));
		free(freeme);
	}
	return rc == 0 ? 0 : -1;
}

/* The worker's filter made ahead (sandbox_worker_prepare), or NULL. */
static scmp_filter_ctx	seccomp_worker_ctx;

static scmp_filter_ctx
seccomp_worker_new(char *err, size_t errlen)
{
	scmp_filter_ctx	ctx;

	if ((ctx = seccomp_init(SCMP_ACT_ERRNO(ENOSYS))) == NULL) {
		snprintf(err, errlen, "seccomp: init failed");
		return NULL;
	}
	/* A binary tree: the allow-list is long and the worker busy. */
	if (seccomp_api_get() >= SECCOMP_LOG_API)
		(void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE,
		    SECCOMP_OPTIMIZE_TREE);
	if (seccomp_attrs(ctx, err, errlen) == -1 ||
	    seccomp_worker_rules(ctx, err, errlen) == -1) {
		seccomp_release(ctx);
		return NULL;
	}
	return ctx;
}

/*
 * Filters compiled once and loaded by every worker: the spawner compiles
 * the worker's filter (kill(2) allowed, left to a small filter stacked on
 * it at confinement), the built-in CLI profile and the CLI's egress
 * filter (egress.c; it allocates, in the CLI's child) into classic BPF, in a
 * sealed memfd that each worker inherits on SANDBOX_BPF_FD and reads at
 * start.  libseccomp's compile of the two (~2.5 ms of CPU a session,
 * most of it the worker's long allow-list) is paid once per daemon.
 * Stacked filters give the strictest action of each: the pair refuses
 * exactly what the one filter made at confinement without them does.
 */
#define SECCOMP_BPF_MAGIC	0x48504246	/* "HPBF" */
#define SECCOMP_BPF_INSNS_MAX	BPF_MAXINSNS	/* per program */

struct seccomp_bpf_hdr {
	uint32_t	magic;
	uint32_t	flags;		/* seccomp(2) SECCOMP_FILTER_FLAG_* */
	uint32_t	eflags;		/* the egress filter's (no CTL_LOG) */
	uint32_t	nworker;	/* instructions of each program */
	uint32_t	ncli;
	uint32_t	negress;
};

static struct {
	struct seccomp_bpf_hdr	hdr;
	struct sock_filter	insn[3 * SECCOMP_BPF_INSNS_MAX];
	int			ready;
} seccomp_bpf;

/* The flags seccomp_load() would give a filter made by seccomp_attrs. */
static uint32_t
seccomp_bpf_flags(void)
{
	return seccomp_api_get() >= SECCOMP_LOG_API ?
	    SECCOMP_FILTER_FLAG_LOG : 0;
}

/* Appends ctx's program to fd, its length in instructions to *n; 0 or -1. */
static int
seccomp_bpf_export(scmp_filter_ctx ctx, int fd, uint32_t *n, char *err,
    size_t errlen)
{
	off_t	a, b = 0;
	int	rc;

	if ((a = lseek(fd, 0, SEEK_END)) == -1)
		rc = -errno;
	else if ((rc = seccomp_export_bpf(ctx, fd)) == 0 &&
	    (b = lseek(fd, 0, SEEK_END)) == -1)
		rc = -errno;
	if (rc != 0) {
		snprintf(err, errlen, "seccomp: export: %s", strerror(-rc));
		return -1;
	}
	if ((b - a) % (off_t)sizeof(struct sock_filter) != 0 || b == a ||
	    (b - a) / (off_t)sizeof(struct sock_filter) >
	    SECCOMP_BPF_INSNS_MAX) {
		snprintf(err, errlen, "seccomp: export: %lld bytes",
		    (long long)(b - a));
		return -1;
	}
	*n = (uint32_t)((b - a) / (off_t)sizeof(struct sock_filter));
	return 0;
}

int
sandbox_bpf_make(int above, char *err, size_t errlen)
{
	struct seccomp_bpf_hdr	 h;
	scmp_filter_ctx		 w = NULL, c = NULL, e = NULL;
	int			 fd, hi = -1, rc = -1;

	if ((fd = memfd_create("hotplex-seccomp", MFD_CLOEXEC |
	    MFD_ALLOW_SEALING)) == -1) {
		snprintf(err, errlen, "memfd_create: %s", strerror(errno));
		return -1;
	}
	memset(&h, 0, sizeof h);
	h.magic = SECCOMP_BPF_MAGIC;
	h.flags = seccomp_bpf_flags();
	if (write(fd, &h, sizeof h) != (ssize_t)sizeof h) {
		snprintf(err, errlen, "memfd: %s", strerror(errno));
		goto out;
	}
	if ((w = seccomp_worker_new(err, errlen)) == NULL)
		goto out;
	if ((rc = seccomp_rule_add(w, SCMP_ACT_ALLOW, SCMP_SYS(kill), 0)) !=
	    0) {
		snprintf(err, errlen, "seccomp: worker rule kill: %s",
		    strerror(-rc));
		rc = -1;
		goto out;
	}
	rc = -1;
	if (seccomp_bpf_export(w, fd, &h.nworker, err, errlen) == -1 ||
	    (c = sandbox_seccomp_profile_compile(SANDBOX_SECCOMP_BUILTIN, err,
	    errlen)) == NULL ||
	    seccomp_bpf_export(c, fd, &h.ncli, err, errlen) == -1 ||
	    (e = sandbox_egress_filter(err, errlen)) == NULL ||
	    seccomp_bpf_export(e, fd, &h.negress, err, errlen) == -1)
		goto out;
	if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_WRITE | F_SEAL_SEAL) == -1 ||
	    (hi = fcntl(fd, F_DUPFD_CLOEXEC, above)) == -1) {
		snprintf(err, errlen, "memfd: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (w != NULL)
		seccomp_release(w);
	if (c != NULL)
		seccomp_release(c);
	if (e != NULL)
		seccomp_release(e);
	close(fd);
	return rc == 0 ? hi : -1;
}

int
sandbox_bpf_take(int fd, char *err, size_t errlen)
{
	struct stat	st;
	size_t		want;
	ssize_t		n;

	if (fstat(fd, &st) == -1 || st.st_size < (off_t)sizeof seccomp_bpf.hdr ||
	    st.st_size > (off_t)(sizeof seccomp_bpf.hdr +
	    sizeof seccomp_bpf.insn) ||
	    (n = pread(fd, &seccomp_bpf, (size_t)st.st_size, 0)) !=
	    (ssize_t)st.st_size) {
		snprintf(err, errlen, "seccomp programs: unreadable");
		return -1;
	}
	want = sizeof seccomp_bpf.hdr + ((size_t)seccomp_bpf.hdr.nworker +
	    seccomp_bpf.hdr.ncli + seccomp_bpf.hdr.negress) *
	    sizeof(struct sock_filter);
	if (seccomp_bpf.hdr.magic != SECCOMP_BPF_MAGIC ||
	    seccomp_bpf.hdr.nworker == 0 || seccomp_bpf.hdr.ncli == 0 ||
	    seccomp_bpf.hdr.negress == 0 ||
	    seccomp_bpf.hdr.nworker > SECCOMP_BPF_INSNS_MAX ||
	    seccomp_bpf.hdr.ncli > SECCOMP_BPF_INSNS_MAX ||
	    seccomp_bpf.hdr.negress > SECCOMP_BPF_INSNS_MAX ||
	    want != (size_t)st.st_size) {
		snprintf(err, errlen, "seccomp programs: malformed");
		return -1;
	}
	seccomp_bpf.ready = 1;
	return 0;
}

/*
 * Loads a program as seccomp_load() would; where seccomp(2) is hidden
 * (valgrind), through prctl as libseccomp falls back to, without flags.
 * No allocation: the CLI child calls it between fork and exec.
 */
static int
seccomp_bpf_load(const struct sock_filter *insn, size_t n, uint32_t flags,
    char *err, size_t errlen)
{
	struct sock_fprog	prog;

	prog.len = (unsigned short)n;
	prog.filter = (struct sock_filter *)insn;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) == 0)
		return 0;
	if (errno == ENOSYS &&
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0)
		return 0;
	snprintf(err, errlen, "seccomp: load: %s", strerror(errno));
	return -1;
}

int
sandbox_seccomp_builtin_ready(void)
{
	return seccomp_bpf.ready;
}

int
sandbox_seccomp_builtin_load(char *err, size_t errlen)
{
	return seccomp_bpf_load(seccomp_bpf.insn + seccomp_bpf.hdr.nworker,
	    seccomp_bpf.hdr.ncli, seccomp_bpf.hdr.flags, err, errlen);
}

int
sandbox_seccomp_egress_ready(void)
{
	return seccomp_bpf.ready;
}

int
sandbox_seccomp_egress_load(char *err, size_t errlen)
{
	return seccomp_bpf_load(seccomp_bpf.insn + seccomp_bpf.hdr.nworker +
	    seccomp_bpf.hdr.ncli, seccomp_bpf.hdr.negress,
	    seccomp_bpf.hdr.eflags, err, errlen);
}

/* The low 32 bits of a syscall's first argument in seccomp_data. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SECCOMP_ARG0_LO	offsetof(struct seccomp_data, args[0])
#else
#define SECCOMP_ARG0_LO	(offsetof(struct seccomp_data, args[0]) + 4)
#endif

/*
 * The filter stacked on the shared one: kill(2) to the CLI, its group
 * and ourselves (seccomp_worker_kill's rules), else ENOSYS, as the one
 * filter's default gives it; every other call is the shared filter's.
 */
static int
seccomp_worker_kill_load(pid_t cli_pid, char *err, size_t errlen)
{
	struct sock_filter	f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, arch)),
		/* Another architecture: the shared filter kills. */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, seccomp_arch_native(), 1,
		    0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
		    offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SCMP_SYS(kill), 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SECCOMP_ARG0_LO),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)cli_pid, 3, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)-cli_pid, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)getpid(), 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO |
		    (ENOSYS & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};

	return seccomp_bpf_load(f, NELEM(f), seccomp_bpf.hdr.flags, err,
	    errlen);
}

int
sandbox_worker_prepare(char *err, size_t errlen)
{
	if (seccomp_worker_ctx != NULL || seccomp_bpf.ready)
		return 0;
	seccomp_worker_ctx = seccomp_worker_new(err, errlen);
	return seccomp_worker_ctx != NULL ? 0 : -1;
}

int
sandbox_worker_confine(pid_t cli_pid, char *err, size_t errlen)
{
	scmp_filter_ctx	ctx;
	int		rc;

	if (errlen > 0)
		err[0] = '\0';
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "no_new_privs: %s", strerror(errno));
		return -1;
	}
	/* kill's filter first: the shared one allows seccomp(2) too. */
	if (seccomp_bpf.ready)
		return seccomp_worker_kill_load(cli_pid, err, errlen) == -1 ||
		    seccomp_bpf_load(seccomp_bpf.insn, seccomp_bpf.hdr.nworker,
		    seccomp_bpf.hdr.flags, err, errlen) == -1 ? -1 : 0;
	ctx = seccomp_worker_ctx;
	seccomp_worker_ctx = NULL;
	if (ctx == NULL && (ctx = seccomp_worker_new(err, errlen)) == NULL)
		return -1;
	if (seccomp_worker_kill(ctx, cli_pid, err, errlen) == -1) {
		seccomp_release(ctx);
		return -1;
	}
	rc = sandbox_seccomp_filter_load(ctx, err, errlen);
	seccomp_release(ctx);
	return rc;
}
