/*
 * try-escape: run inside the sandbox (tests/sandbox/sandbox-run), tries to
 * get out and to abuse the kernel, one probe per policy line, and prints a
 * TAP line per probe with the errno it got and the one it expected
 * (bubblewrap's try-syscall idea).  Every probe runs in its own child, so
 * that a probe that wrongly succeeds changes nothing for the next; probes
 * pass arguments that make a wrongly allowed call fail harmlessly (with
 * EFAULT, EBADF, ENOENT...) rather than do anything.
 *
 * Environment (set by tests/sandbox/run.sh, or by
 * tests/integration/test_sandbox.py inside a hotplexd session):
 *	TE_OTHER	another session's workdir, holding "secret"
 *	TE_SSHKEY	a fake private key outside every allowed path
 *	TE_OUTSIDE	a directory outside the sandbox, holding "file"
 *	TE_SUID		a setuid-root copy of this program, or unset
 *	TE_NPROC	the RLIMIT_NPROC given to the sandbox, or unset
 *	TE_BND_KEPT	set when the caller never had privileges to drop: the
 *			capability bounding set is inherited and cannot be
 *			emptied (no_new_privs makes it inert); otherwise it
 *			must be empty
 *	SANDBOX_DECOY_PID	any process outside the sandbox (sandbox-run
 *			-D's decoy, or hotplexd itself)
 *	SANDBOX_DECOY_SOCK	an abstract socket listened on outside
 *
 * "try-escape --print-euid" prints its effective uid (the setuid probe).
 */
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/sandbox/sandbox.h"

#define TE_PATH_MAX	4096
#define TE_BOMB_MAX	4096	/* forks the fork bomb gives up after */
#define TE_OUT_MAX	64	/* bytes read from the setuid probe */
#define TE_STATUS_MAX	8192	/* bytes of /proc/self/status */
#define TE_SCOPE_ABI	6	/* Landlock ABI with signal/socket scopes */
#define TE_FAILED	EPROTO	/* "a check inside the probe failed" */
#define TE_BAD_FLAGS	0xdead0000UL	/* invalid flags for kexec */
#define TE_X32_BIT	0x40000000L	/* __X32_SYSCALL_BIT */
#define TE_I386_GETPID	20
#define TE_PTRACE_ATTACH 16

/* When a probe means something. */
#define NEED_UNPRIV	0x01	/* a dropped, unprivileged uid */
#define NEED_SCOPE	0x02	/* Landlock signal/abstract-socket scopes */
#define NEED_DECOY	0x04	/* a process outside: sandbox-run -D */
#define NEED_SUID	0x08	/* TE_SUID */
#define NEED_NPROC	0x10	/* TE_NPROC */
#define NEED_X86_64	0x20

#define PROBE(name, fn, want, needs)	{ name, fn, want, needs, 0, NULL }

/* Expected outcome: an errno, 0 for success, or a killing signal. */
#define KILLED(sig)	(-(sig))

static pid_t	te_decoy = -1;
static int	te_abi;

static const char *
te_env(const char *name)
{
	const char	*v = getenv(name);

	return v != NULL && *v != '\0' ? v : NULL;
}

static const char *
te_path(const char *dirvar, const char *file)
{
	static char	buf[TE_PATH_MAX];

	snprintf(buf, sizeof buf, "%s/%s", te_env(dirvar), file);
	return buf;
}

/* Result of a plain call: 0 or its errno. */
static int
te_rc(long rc)
{
	return rc == -1 ? errno : 0;
}

/* Result of an open: closes what it got. */
static int
te_open(const char *path, int flags)
{
	int	fd;

	if ((fd = open(path, flags | O_CLOEXEC, 0644)) == -1)
		return errno;
	close(fd);
	return 0;
}

/* ---- positive controls: the sandbox must not be a brick ---- */

static int
p_read_workdir(void)
{
	return te_open("hello", O_RDONLY);
}

static int
p_write_workdir(void)
{
	return te_open("written-by-sandbox", O_WRONLY | O_CREAT | O_TRUNC);
}

static int
p_write_tmpdir(void)
{
	char	path[TE_PATH_MAX];

	if (te_env("TMPDIR") == NULL)
		return TE_FAILED;
	snprintf(path, sizeof path, "%s/t", te_env("TMPDIR"));
	return te_open(path, O_WRONLY | O_CREAT | O_TRUNC);
}

static int
p_read_etc(void)
{
	return te_open("/etc/passwd", O_RDONLY);
}

static int
p_write_devnull(void)
{
	return te_open("/dev/null", O_WRONLY);
}

static int
p_tcp_socket(void)
{
	int	s;

	if ((s = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return errno;
	close(s);
	return 0;
}

static int
p_plain_fork(void)
{
	pid_t	pid;
	int	st;

	if ((pid = fork()) == -1)
		return errno;
	if (pid == 0)
		_exit(0);
	return waitpid(pid, &st, 0) == pid && WIFEXITED(st) ? 0 : TE_FAILED;
}

/* An abstract socket inside the sandbox is reachable from inside. */
static int
p_abstract_inside(void)
{
	struct sockaddr_un	sun;
	socklen_t		len;
	int			s, c, rc;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1,
	    "hotplex-te-%ld", (long)getpid());
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	    strlen(sun.sun_path + 1));
	if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) == -1 ||
	    bind(s, (struct sockaddr *)&sun, len) == -1 || listen(s, 1) == -1)
		return errno;
	if ((c = socket(AF_UNIX, SOCK_STREAM, 0)) == -1)
		return errno;
	rc = te_rc(connect(c, (struct sockaddr *)&sun, len));
	close(c);
	close(s);
	return rc;
}

static int
p_nnp_set(void)
{
	return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : TE_FAILED;
}

static int
p_core_zero(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_CORE, &rl) == -1)
		return errno;
	return rl.rlim_cur == 0 && rl.rlim_max == 0 ? 0 : TE_FAILED;
}

/* ---- other processes ---- */

static int
p_ptrace_attach(void)
{
	pid_t	target = te_decoy != -1 ? te_decoy : getppid();

	/* If it got through, our exit detaches. */
	return te_rc(syscall(SYS_ptrace, TE_PTRACE_ATTACH, target, 0, 0));
}

static int
p_ptrace_traceme(void)
{
	return te_rc(syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0));
}

static int
p_process_vm_readv(void)
{
	char		buf[8];
	struct iovec	local = { buf, sizeof buf };
	struct iovec	remote = { (void *)0x1000, sizeof buf };

	return te_rc(process_vm_readv(te_decoy, &local, 1, &remote, 1, 0));
}

static int
p_kill_outside(void)
{
	return te_rc(kill(te_decoy, 0));
}

static int
p_abstract_outside(void)
{
	struct sockaddr_un	sun;
	const char		*name = te_env("SANDBOX_DECOY_SOCK");
	int			s, rc;

	if (name == NULL)
		return TE_FAILED;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1, "%s", name);
	if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) == -1)
		return errno;
	rc = te_rc(connect(s, (struct sockaddr *)&sun, (socklen_t)(
	    offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name))));
	close(s);
	return rc;
}

static int
p_proc_mem_outside(void)
{
	char	path[TE_PATH_MAX];

	snprintf(path, sizeof path, "/proc/%ld/mem", (long)te_decoy);
	return te_open(path, O_RDONLY);
}

/* Its cwd and root are magic links into paths we may not see. */
static int
p_proc_cwd_outside(void)
{
	char	path[TE_PATH_MAX];

	snprintf(path, sizeof path, "/proc/%ld/cwd/", (long)te_decoy);
	return te_open(path, O_RDONLY | O_DIRECTORY);
}

/* ---- the filesystem ---- */

static int
p_read_other_workdir(void)
{
	return te_open(te_path("TE_OTHER", "secret"), O_RDONLY);
}

static int
p_list_other_workdir(void)
{
	return te_open(te_env("TE_OTHER"), O_RDONLY | O_DIRECTORY);
}

static int
p_read_ssh_key(void)
{
	return te_open(te_env("TE_SSHKEY"), O_RDONLY);
}

static int
p_list_root_home(void)
{
	return te_open("/root", O_RDONLY | O_DIRECTORY);
}

static int
p_read_via_proc_root(void)
{
	char	path[TE_PATH_MAX + sizeof "/proc/self/root"];

	snprintf(path, sizeof path, "/proc/self/root%s",
	    te_path("TE_OTHER", "secret"));
	return te_open(path, O_RDONLY);
}

static int
p_create_outside(void)
{
	return te_open(te_path("TE_OUTSIDE", "planted"),
	    O_WRONLY | O_CREAT | O_EXCL);
}

static int
p_write_etc(void)
{
	/* No O_TRUNC: opening for write is the whole probe. */
	return te_open("/etc/hostname", O_WRONLY);
}

static int
p_truncate_outside(void)
{
	struct stat	st;
	const char	*path = te_path("TE_OUTSIDE", "file");

	if (stat(path, &st) == -1)
		return errno;
	return te_rc(truncate(path, st.st_size));
}

static int
p_unlink_other(void)
{
	return te_rc(unlink(te_path("TE_OTHER", "secret")));
}

static int
p_symlink_file_escape(void)
{
	unlink("link-to-secret");
	if (symlink(te_path("TE_OTHER", "secret"), "link-to-secret") == -1)
		return TE_FAILED;
	return te_open("link-to-secret", O_RDONLY);
}

static int
p_symlink_dir_escape(void)
{
	unlink("link-to-outside");
	if (symlink(te_env("TE_OUTSIDE"), "link-to-outside") == -1)
		return TE_FAILED;
	return te_open("link-to-outside/planted", O_WRONLY | O_CREAT |
	    O_EXCL);
}

static int
p_hardlink_in(void)
{
	unlink("hardlink-to-secret");
	return te_rc(link(te_path("TE_OTHER", "secret"),
	    "hardlink-to-secret"));
}

static int
p_rename_out(void)
{
	if (te_open("to-move", O_WRONLY | O_CREAT) != 0)
		return TE_FAILED;
	return te_rc(rename("to-move", te_path("TE_OUTSIDE", "moved")));
}

static int
p_mknod_dev(void)
{
	unlink("null-dev");
	return te_rc(mknod("null-dev", S_IFCHR | 0666, makedev(1, 3)));
}

static int
p_write_proc_sys(void)
{
	return te_open("/proc/sys/kernel/hostname", O_WRONLY);
}

static int
p_write_sys(void)
{
	return te_open("/sys/kernel/profiling", O_WRONLY);
}

static int
p_open_raw_dev(void)
{
	return te_open("/dev/kmsg", O_RDONLY);
}

static int
p_chmod_system(void)
{
	struct stat	st;

	if (stat("/etc/hostname", &st) == -1)
		return errno;
	/* The same mode: harmless if it were allowed. */
	return te_rc(chmod("/etc/hostname", st.st_mode & 07777));
}

/* ---- mounts and namespaces ---- */

static int
p_mount(void)
{
	return te_rc(mount("none", "/nonexistent-hotplex",
	    "hotplex-nonexistent-fs", 0, NULL));
}

static int
p_umount(void)
{
	return te_rc(syscall(SYS_umount2, "/nonexistent-hotplex", 0));
}

static int
p_pivot_root(void)
{
	return te_rc(syscall(SYS_pivot_root, "/nonexistent-hotplex",
	    "/nonexistent-hotplex"));
}

static int
p_chroot(void)
{
	return te_rc(chroot("/nonexistent-hotplex"));
}

static int
p_unshare_user(void)
{
	return te_rc(unshare(CLONE_NEWUSER));
}

static int
p_unshare_mnt(void)
{
	return te_rc(unshare(CLONE_NEWNS));
}

static int
p_setns(void)
{
	return te_rc(setns(-1, 0));
}

/* Raw clone with namespace flags; a child that gets through exits. */
static int
te_clone(unsigned long flags)
{
	long	pid;
	int	st;

	pid = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
	if (pid == -1)
		return errno;
	if (pid == 0)
		_exit(0);
	waitpid((pid_t)pid, &st, 0);
	return 0;
}

static int
p_clone_newns(void)
{
	return te_clone(CLONE_NEWNS);
}

static int
p_clone_newuser(void)
{
	return te_clone(CLONE_NEWUSER);
}

static int
p_clone3(void)
{
	/* A NULL argument: EFAULT if it got through. */
	return te_rc(syscall(SYS_clone3, NULL, (size_t)64));
}

static int
p_open_tree(void)
{
	return te_rc(syscall(SYS_open_tree, -1, "", 0));
}

static int
p_fsopen(void)
{
	return te_rc(syscall(SYS_fsopen, "hotplex-nonexistent-fs", 0));
}

static int
p_move_mount(void)
{
	return te_rc(syscall(SYS_move_mount, -1, "", -1, "", 0));
}

/* ---- the kernel ---- */

static int
p_init_module(void)
{
	return te_rc(syscall(SYS_init_module, NULL, 0, ""));
}

static int
p_finit_module(void)
{
	return te_rc(syscall(SYS_finit_module, -1, "", 0));
}

static int
p_delete_module(void)
{
	return te_rc(syscall(SYS_delete_module, "hotplex_nonexistent",
	    O_NONBLOCK));
}

static int
p_kexec_load(void)
{
	return te_rc(syscall(SYS_kexec_load, 0, 0, NULL, TE_BAD_FLAGS));
}

static int
p_kexec_file_load(void)
{
	return te_rc(syscall(SYS_kexec_file_load, -1, -1, 0, NULL,
	    TE_BAD_FLAGS));
}

static int
p_bpf(void)
{
	return te_rc(syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, NULL, 0));
}

static int
p_perf_event_open(void)
{
	return te_rc(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
}

static int
p_userfaultfd(void)
{
	long	fd = syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd == -1)
		return errno;
	close((int)fd);
	return 0;
}

static int
p_keyctl(void)
{
	return te_rc(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -1, 0));
}

static int
p_add_key(void)
{
	return te_rc(syscall(SYS_add_key, "user", "hotplex", NULL, 0, -1));
}

static int
p_request_key(void)
{
	return te_rc(syscall(SYS_request_key, "user", "hotplex", NULL, -1));
}

static int
p_io_uring_setup(void)
{
	return te_rc(syscall(SYS_io_uring_setup, 1, NULL));
}

static int
p_io_uring_enter(void)
{
	return te_rc(syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
}

/* ---- raw network ---- */

static int
te_socket(int domain, int type)
{
	int	s;

	if ((s = socket(domain, type, 0)) == -1)
		return errno;
	close(s);
	return 0;
}

static int
p_raw_socket(void)
{
	return te_socket(AF_INET, SOCK_RAW);
}

static int
p_raw_socket_flags(void)
{
	return te_socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK);
}

static int
p_packet_socket(void)
{
	return te_socket(AF_PACKET, SOCK_DGRAM);
}

static int
p_sock_packet(void)
{
	return te_socket(AF_INET, SOCK_PACKET);
}

/* ---- terminals ---- */

static int
p_tiocsti(void)
{
	char	c = 'x';

	return te_rc(ioctl(-1, TIOCSTI, &c));
}

static int
p_tiocsti_high_bits(void)
{
	char	c = 'x';

	/* The kernel reads the request as 32 bits; so must the filter. */
	return te_rc(syscall(SYS_ioctl, -1, (1UL << 32) | TIOCSTI, &c));
}

/* ---- privileges and limits ---- */

static int
p_setuid_root(void)
{
	return te_rc(setuid(0));
}

static int
p_no_capabilities(void)
{
	static const char *const keys[] = { "CapInh:", "CapPrm:", "CapEff:",
	    "CapBnd:", "CapAmb:" };
	char	buf[TE_STATUS_MAX], *p;
	size_t	i;
	ssize_t	n;
	int	fd;

	if ((fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)) == -1)
		return errno;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return TE_FAILED;
	buf[n] = '\0';
	for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		if (te_env("TE_BND_KEPT") != NULL &&
		    strcmp(keys[i], "CapBnd:") == 0)
			continue;
		if ((p = strstr(buf, keys[i])) == NULL)
			return TE_FAILED;
		if (strtoull(p + strlen(keys[i]), NULL, 16) != 0)
			return TE_FAILED;
	}
	return 0;
}

static int
p_setuid_binary(void)
{
	char	out[TE_OUT_MAX];
	int	p[2], st;
	ssize_t	n;
	pid_t	pid;

	if (pipe(p) == -1 || (pid = fork()) == -1)
		return errno;
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		execl(te_env("TE_SUID"), "try-escape", "--print-euid",
		    (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	n = read(p[0], out, sizeof out - 1);
	close(p[0]);
	waitpid(pid, &st, 0);
	if (n <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return TE_FAILED;
	out[n] = '\0';
	/* Exec worked, but no_new_privs kept the setuid bit from acting. */
	return atol(out) == (long)geteuid() ? EPERM : 0;
}

static int
p_rlimit_soft_above_hard(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return errno;
	rl.rlim_cur = rl.rlim_max + 1;
	return te_rc(setrlimit(RLIMIT_NOFILE, &rl));
}

static int
p_rlimit_raise_hard(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NPROC, &rl) == -1)
		return errno;
	if (rl.rlim_max == RLIM_INFINITY)
		return TE_FAILED;
	rl.rlim_max++;
	return te_rc(setrlimit(RLIMIT_NPROC, &rl));
}

/* Forks until the kernel says no; the count must stay within the limit. */
static int
p_fork_bomb(void)
{
	static pid_t	kids[TE_BOMB_MAX];
	long		limit = atol(te_env("TE_NPROC"));
	int		n, err = 0, i;

	for (n = 0; n < TE_BOMB_MAX; n++) {
		if ((kids[n] = fork()) == -1) {
			err = errno;
			break;
		}
		if (kids[n] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;)
				pause();
		}
	}
	for (i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	for (i = 0; i < n; i++)
		waitpid(kids[i], NULL, 0);
	if (err == 0 || n >= limit)
		return TE_FAILED;
	return err;
}

/* ---- other architectures: the filter kills ---- */

static int
p_x32_syscall(void)
{
	return te_rc(syscall(TE_X32_BIT | SYS_getpid));
}

static int
p_int80_syscall(void)
{
#ifdef __x86_64__
	long	ret = TE_I386_GETPID;

	/* A sanitizer's SIGSEGV handler would turn "no ia32" into exit 1. */
	signal(SIGSEGV, SIG_DFL);
	__asm__ volatile ("int $0x80" : "+a" (ret) : : "memory");
	return ret < 0 ? (int)-ret : 0;
#else
	return TE_FAILED;
#endif
}

static const struct probe {
	const char	*name;
	int		(*fn)(void);
	int		 want;
	int		 needs;
	int		 skip_on;	/* an outcome that means "cannot tell" */
	const char	*skip_why;
} probes[] = {
	PROBE("control: read a file in the workdir", p_read_workdir, 0, 0),
	PROBE("control: create a file in the workdir", p_write_workdir, 0, 0),
	PROBE("control: create a file in TMPDIR", p_write_tmpdir, 0, 0),
	PROBE("control: read /etc/passwd", p_read_etc, 0, 0),
	PROBE("control: write /dev/null", p_write_devnull, 0, 0),
	PROBE("control: TCP socket", p_tcp_socket, 0, 0),
	PROBE("control: plain fork", p_plain_fork, 0, 0),
	PROBE("control: abstract socket inside the sandbox", p_abstract_inside,
	    0, 0),
	PROBE("control: no_new_privs is set", p_nnp_set, 0, 0),
	PROBE("control: core dumps off", p_core_zero, 0, 0),

	PROBE("ptrace attach to a process outside", p_ptrace_attach, EPERM, 0),
	PROBE("ptrace traceme", p_ptrace_traceme, EPERM, 0),
	PROBE("process_vm_readv of a process outside", p_process_vm_readv,
	    EPERM, NEED_DECOY),
	PROBE("kill a process outside (same uid)", p_kill_outside, EPERM,
	    NEED_DECOY | NEED_SCOPE),
	PROBE("connect to an abstract socket outside", p_abstract_outside,
	    EPERM, NEED_DECOY | NEED_SCOPE),
	PROBE("open /proc/PID/mem of a process outside", p_proc_mem_outside,
	    EACCES, NEED_DECOY),
	PROBE("follow /proc/PID/cwd of a process outside", p_proc_cwd_outside,
	    EACCES, NEED_DECOY),

	PROBE("read another workdir's file", p_read_other_workdir, EACCES, 0),
	PROBE("list another workdir", p_list_other_workdir, EACCES, 0),
	PROBE("read a private key in a home outside", p_read_ssh_key, EACCES,
	    0),
	PROBE("list /root", p_list_root_home, EACCES, 0),
	PROBE("read another workdir via /proc/self/root", p_read_via_proc_root,
	    EACCES, 0),
	PROBE("create a file outside the workdir", p_create_outside, EACCES, 0),
	PROBE("open /etc/hostname for writing", p_write_etc, EACCES, 0),
	PROBE("truncate a file outside", p_truncate_outside, EACCES, 0),
	PROBE("unlink another workdir's file", p_unlink_other, EACCES, 0),
	PROBE("symlink escape: read through a link", p_symlink_file_escape,
	    EACCES, 0),
	PROBE("symlink escape: create through a dir link", p_symlink_dir_escape,
	    EACCES, 0),
	PROBE("hard link another workdir's file in", p_hardlink_in, EXDEV, 0),
	PROBE("rename a file out of the workdir", p_rename_out, EACCES, 0),
	PROBE("mknod a device in the workdir", p_mknod_dev, EACCES, 0),
	PROBE("write /proc/sys", p_write_proc_sys, EACCES, 0),
	PROBE("write /sys", p_write_sys, EACCES, 0),
	PROBE("open /dev/kmsg", p_open_raw_dev, EACCES, 0),
	PROBE("chmod a system file", p_chmod_system, EPERM, NEED_UNPRIV),

	PROBE("mount", p_mount, EPERM, 0),
	PROBE("umount2", p_umount, EPERM, 0),
	PROBE("pivot_root", p_pivot_root, EPERM, 0),
	PROBE("chroot", p_chroot, EPERM, 0),
	PROBE("unshare(CLONE_NEWUSER)", p_unshare_user, EPERM, 0),
	PROBE("unshare(CLONE_NEWNS)", p_unshare_mnt, EPERM, 0),
	PROBE("setns", p_setns, EPERM, 0),
	PROBE("clone(CLONE_NEWNS)", p_clone_newns, EPERM, 0),
	PROBE("clone(CLONE_NEWUSER)", p_clone_newuser, EPERM, 0),
	PROBE("clone3 (libc falls back to clone)", p_clone3, ENOSYS, 0),
	PROBE("open_tree", p_open_tree, EPERM, 0),
	PROBE("fsopen", p_fsopen, EPERM, 0),
	PROBE("move_mount", p_move_mount, EPERM, 0),

	PROBE("init_module", p_init_module, EPERM, 0),
	PROBE("finit_module", p_finit_module, EPERM, 0),
	PROBE("delete_module", p_delete_module, EPERM, 0),
	PROBE("kexec_load", p_kexec_load, EPERM, 0),
	PROBE("kexec_file_load", p_kexec_file_load, EPERM, 0),
	PROBE("bpf", p_bpf, EPERM, 0),
	PROBE("perf_event_open", p_perf_event_open, EPERM, 0),
	PROBE("userfaultfd", p_userfaultfd, EPERM, 0),
	PROBE("keyctl", p_keyctl, EPERM, 0),
	PROBE("add_key", p_add_key, EPERM, 0),
	PROBE("request_key", p_request_key, EPERM, 0),
	PROBE("io_uring_setup", p_io_uring_setup, ENOSYS, 0),
	PROBE("io_uring_enter", p_io_uring_enter, ENOSYS, 0),

	PROBE("raw IPv4 socket", p_raw_socket, EPERM, 0),
	PROBE("raw IPv6 socket with type flags", p_raw_socket_flags, EPERM, 0),
	PROBE("AF_PACKET socket", p_packet_socket, EPERM, 0),
	PROBE("SOCK_PACKET socket", p_sock_packet, EPERM, 0),
	PROBE("ioctl TIOCSTI", p_tiocsti, EPERM, 0),
	PROBE("ioctl TIOCSTI with high bits set", p_tiocsti_high_bits, EPERM,
	    0),

	PROBE("setuid(0)", p_setuid_root, EPERM, NEED_UNPRIV),
	PROBE("no capabilities in any set", p_no_capabilities, 0, NEED_UNPRIV),
	PROBE("setuid-root binary gains nothing (no_new_privs)", p_setuid_binary,
	    EPERM, NEED_UNPRIV | NEED_SUID),
	PROBE("rlimit soft above hard", p_rlimit_soft_above_hard, EINVAL, 0),
	PROBE("raise the RLIMIT_NPROC hard limit", p_rlimit_raise_hard, EPERM,
	    NEED_UNPRIV),
	PROBE("fork bomb stops at RLIMIT_NPROC", p_fork_bomb, EAGAIN,
	    NEED_UNPRIV | NEED_NPROC),

	PROBE("x32 syscall kills the process", p_x32_syscall, KILLED(SIGSYS),
	    NEED_X86_64),
	{ "i386 int 0x80 syscall kills the process", p_int80_syscall,
	    KILLED(SIGSYS), NEED_X86_64, KILLED(SIGSEGV),
	    "the kernel refuses int 0x80 itself (ia32 emulation off)" },
};

/* Why a probe cannot mean anything here, or NULL. */
static const char *
te_skip(int needs)
{
	if ((needs & NEED_UNPRIV) && geteuid() == 0)
		return "runs as root: needs the drop to an unprivileged uid";
	if ((needs & NEED_SCOPE) && te_abi < TE_SCOPE_ABI)
		return "Landlock ABI < 6: no signal/abstract socket scoping";
	if ((needs & NEED_DECOY) && te_decoy == -1)
		return "no process outside (sandbox-run -D)";
	if ((needs & NEED_SUID) && te_env("TE_SUID") == NULL)
		return "no setuid-root helper";
	if ((needs & NEED_NPROC) && te_env("TE_NPROC") == NULL)
		return "no RLIMIT_NPROC given";
#ifndef __x86_64__
	if (needs & NEED_X86_64)
		return "not x86_64";
#endif
	return NULL;
}

static const char *
te_outcome(int r, char *buf, size_t len)
{
	if (r < 0)
		snprintf(buf, len, "killed by signal %d", -r);
	else if (r == 0)
		snprintf(buf, len, "success");
	else
		snprintf(buf, len, "%s", strerrorname_np(r) != NULL ?
		    strerrorname_np(r) : "errno?");
	return buf;
}

/* Runs one probe in a child; the exit status is the errno. */
static int
te_run(const struct probe *p)
{
	pid_t	pid;
	int	st;

	fflush(stdout);
	if ((pid = fork()) == -1)
		return errno;
	if (pid == 0)
		_exit(p->fn());
	if (waitpid(pid, &st, 0) == -1)
		return errno;
	if (WIFSIGNALED(st))
		return KILLED(WTERMSIG(st));
	return WEXITSTATUS(st);
}

int
main(int argc, char *argv[])
{
	const char	*skip, *v;
	char		 got[64], want[64];
	size_t		 i, n = sizeof probes / sizeof probes[0];
	int		 r, failed = 0;

	if (argc == 2 && strcmp(argv[1], "--print-euid") == 0) {
		printf("%ld\n", (long)geteuid());
		return 0;
	}
	if (te_env("TE_OTHER") == NULL || te_env("TE_SSHKEY") == NULL ||
	    te_env("TE_OUTSIDE") == NULL) {
		fprintf(stderr, "try-escape: set TE_OTHER, TE_SSHKEY and "
		    "TE_OUTSIDE\n");
		return 2;
	}
	if ((v = te_env("SANDBOX_DECOY_PID")) != NULL)
		te_decoy = (pid_t)atol(v);
	te_abi = sandbox_landlock_abi();

	printf("# Landlock ABI %d, running as uid %ld\n", te_abi,
	    (long)geteuid());
	printf("1..%zu\n", n);
	for (i = 0; i < n; i++) {
		if ((skip = te_skip(probes[i].needs)) != NULL) {
			printf("ok %zu - %s # SKIP %s\n", i + 1,
			    probes[i].name, skip);
			continue;
		}
		r = te_run(&probes[i]);
		te_outcome(r, got, sizeof got);
		te_outcome(probes[i].want, want, sizeof want);
		if (probes[i].skip_why != NULL && r == probes[i].skip_on)
			printf("ok %zu - %s # SKIP %s\n", i + 1,
			    probes[i].name, probes[i].skip_why);
		else if (r == probes[i].want)
			printf("ok %zu - %s: %s\n", i + 1, probes[i].name,
			    got);
		else {
			printf("not ok %zu - %s: %s, expected %s\n", i + 1,
			    probes[i].name, got, want);
			failed++;
		}
	}
	fflush(stdout);
	return failed == 0 ? 0 : 1;
}
