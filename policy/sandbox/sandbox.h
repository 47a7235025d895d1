/*
 * The sandbox around the Claude CLI child (rlimits, privilege drop,
 * no_new_privs, Landlock, seccomp) and the worker's own confinement.
 *
 * Use in the worker:
 *
 *	pid = fork();
 *	child:	setsid(); prctl(PR_SET_PDEATHSIG, SIGKILL); check getppid();
 *		if (sandbox_child(&conf, err, sizeof err) == -1)
 *			write err to the error pipe, _exit();
 *		set up the environment, close fds above 2, execve(cli).
 *	parent:	sandbox_worker_confine(pid, err, sizeof err);
 *
 * sandbox_child() does, in this order: rlimits; reading of the seccomp
 * profile and opening of the Landlock paths (still privileged, relative
 * paths from the caller's cwd); chdir(workdir); the privilege drop;
 * PR_SET_NO_NEW_PRIVS; Landlock; seccomp.  It allocates (the
 * seccomp filter, through libseccomp): call it only in the child of a
 * single-threaded parent, as the worker is.
 */
#ifndef HP_SANDBOX_H
#define HP_SANDBOX_H

#include <sys/types.h>
#include <sys/resource.h>
#include <stddef.h>

enum sandbox_landlock {
	SANDBOX_LANDLOCK_OFF = 0,
	SANDBOX_LANDLOCK_BEST_EFFORT,	/* whatever the kernel has; warn */
	SANDBOX_LANDLOCK_REQUIRED	/* fail without Landlock */
};

enum sandbox_egress {
	SANDBOX_EGRESS_OFF = 0,
	SANDBOX_EGRESS_ON,		/* what the kernel has; warn */
	SANDBOX_EGRESS_REQUIRED		/* fail without Landlock TCP rules */
};

#define SANDBOX_EGRESS_PORTS_MAX	2	/* the gateway, its proxy */

struct sandbox_conf {
	const char		*workdir;	/* read/write/exec, and cwd */
	const char		*tmpdir;	/* private TMPDIR: rw, or NULL */
	const char		*config_dir;	/* CLAUDE_CONFIG_DIR: rw, or NULL */
	const char *const	*rx_paths;	/* extra read/exec (the CLI's
						   directory), NULL-terminated */
	const char *const	*rw_paths;	/* extra read/write */
	uid_t			 uid;		/* used if drop_privs */
	gid_t			 gid;
	int			 drop_privs;
	enum sandbox_landlock	 landlock;
	const char		*seccomp_profile; /* path, SANDBOX_SECCOMP_BUILTIN,
						   or NULL: no seccomp */
	rlim_t			 nofile;	/* 0 = leave unchanged */
	rlim_t			 nproc;		/* per real uid, not per child */
	rlim_t			 cpu;		/* seconds */
	rlim_t			 fsize;		/* bytes */
	enum sandbox_egress	 egress;	/* policy/sandbox/egress.c */
	unsigned short		 egress_ports[SANDBOX_EGRESS_PORTS_MAX];
						/* TCP connect only there;
						   0 = unused */
};

/* The profile compiled into the binary (policy/sandbox/seccomp.profile). */
#define SANDBOX_SECCOMP_BUILTIN	"builtin"

/* Longest message sandbox_child() and friends write into err. */
#define SANDBOX_ERR_MAX		256

/*
 * Applies the sandbox to the calling process.  Returns 0, or -1 with a
 * message in err.  On success err is empty, or holds a warning (Landlock
 * weaker than asked in best-effort mode) that the caller may log.
 */
int	sandbox_child(const struct sandbox_conf *, char *err, size_t errlen);
/*
 * Whether sandbox_child() would allocate memory (it compiles a seccomp
 * filter there unless the spawner's is loaded as is): a child that shares
 * its parent's memory (vfork-style) may run it only if not.
 */
int	sandbox_child_allocates(const struct sandbox_conf *);

/*
 * The one privilege drop: uid/gid for good, with groups (or none), no
 * capability left or obtainable, the ids not settable back.  0 or -1.
 */
int	sandbox_drop(uid_t, gid_t, const gid_t *groups, size_t ngroups,
	    char *err, size_t errlen);

/* The first Landlock ABI with signal and abstract-socket scopes. */
#define SANDBOX_LANDLOCK_SCOPE_ABI	6

/* Landlock ABI version of the running kernel; 0 if it has none. */
int	sandbox_landlock_abi(void);

/*
 * Parses and compiles a seccomp profile without loading it: for a
 * configuration check before any fork.
 */
int	sandbox_seccomp_check(const char *path, char *err, size_t errlen);

/*
 * Confines the worker once its CLI child (a process group leader, pid
 * cli_pid) runs: no_new_privs and a seccomp filter that denies exec,
 * fork, non-AF_UNIX sockets, opening files for writing, filesystem changes,
 * identity changes, and signals to anyone but itself and the CLI's group.
 */
int	sandbox_worker_confine(pid_t cli_pid, char *err, size_t errlen);
/*
 * Makes that filter ahead, but for the CLI's pid (a spare's work: the
 * confinement then only adds kill's rule and loads it).  0, or -1.
 */
int	sandbox_worker_prepare(char *err, size_t errlen);

/*
 * The worker's filter, the built-in CLI profile and the egress filter
 * compiled once (the spawner, at start), for every worker: a sealed memfd, duplicated to a
 * descriptor >= above (close-on-exec; the caller hands it to each worker),
 * or -1 with a message in err.
 */
int	sandbox_bpf_make(int above, char *err, size_t errlen);
/*
 * A worker reads them from that descriptor (the caller closes it): its
 * confinement, its CLI's built-in profile and egress filter are then
 * loaded as they are, with no compile.  0, or -1 (each is compiled at open, as without them).
 */
int	sandbox_bpf_take(int fd, char *err, size_t errlen);
/*
 * Internal to policy/sandbox/sandbox.c, landlock.c and seccomp.c.
 */
int	sandbox_seccomp_builtin_ready(void);
int	sandbox_seccomp_builtin_load(char *err, size_t errlen);
int	sandbox_seccomp_egress_ready(void);
int	sandbox_seccomp_egress_load(char *err, size_t errlen);
void	*sandbox_egress_filter(char *err, size_t errlen);
int	sandbox_landlock_prepare(const struct sandbox_conf *, int *rsfd,
	    int *abi, char *err, size_t errlen);
int	sandbox_landlock_enforce(int rsfd, int abi, char *err, size_t errlen);
int	sandbox_egress_prepare(const struct sandbox_conf *, int *rsfd,
	    void **filter, char *err, size_t errlen);
int	sandbox_egress_enforce(const struct sandbox_conf *, int rsfd,
	    void *filter, char *err, size_t errlen);
void	*sandbox_seccomp_profile_compile(const char *path, char *err,
	    size_t errlen);
int	sandbox_seccomp_filter_load(void *filter, char *err, size_t errlen);
void	sandbox_seccomp_filter_free(void *filter);

#endif
