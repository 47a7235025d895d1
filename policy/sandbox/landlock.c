/*
 * Landlock ruleset for the CLI child: the system read-only (and executable
 * where programs live), a few device nodes, and read/write only in the
 * workdir, the private TMPDIR, the CLI's config dir and the paths the
 * caller lists.  Signals and abstract unix sockets are scoped to the
 * sandbox where the kernel can (ABI 6).  The headers on the build machine
 * may be older than the kernel: what newer ABIs add is defined here.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "policy/sandbox/sandbox.h"

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER		(1ULL << 13)	/* ABI 2 */
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE		(1ULL << 14)	/* ABI 3 */
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV		(1ULL << 15)	/* ABI 5 */
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET	(1ULL << 0)	/* ABI 6 */
#define LANDLOCK_SCOPE_SIGNAL			(1ULL << 1)
#endif
#ifndef LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON
#define LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON	(1U << 1)	/* ABI 7 */
#endif

/* The ABIs that brought what we use. */
#define LL_ABI_REFER		2
#define LL_ABI_TRUNCATE		3
#define LL_ABI_IOCTL_DEV	5
#define LL_ABI_SCOPE		SANDBOX_LANDLOCK_SCOPE_ABI
#define LL_ABI_LOG		7

/* Our own copy of the ruleset attribute, as of ABI 6 (zeros are accepted
 * by older kernels). */
struct ll_ruleset_attr {
	uint64_t	handled_access_fs;
	uint64_t	handled_access_net;
	uint64_t	scoped;
};

#define LL_FS_ABI1	((LANDLOCK_ACCESS_FS_MAKE_SYM << 1) - 1)

#define LL_R_FILE	(LANDLOCK_ACCESS_FS_READ_FILE)
#define LL_R_DIR	(LANDLOCK_ACCESS_FS_READ_DIR)
#define LL_X		(LANDLOCK_ACCESS_FS_EXECUTE)
#define LL_W_FILE	(LANDLOCK_ACCESS_FS_WRITE_FILE | \
			 LANDLOCK_ACCESS_FS_TRUNCATE)
#define LL_RO		(LL_R_FILE | LL_R_DIR)
#define LL_RX		(LL_RO | LL_X)
/* Device nodes: read, write and ioctl (ttys), never exec. */
#define LL_DEV		(LL_R_FILE | LL_W_FILE | LANDLOCK_ACCESS_FS_IOCTL_DEV)
/* Read/write trees: everything but creating device nodes. */
#define LL_RW		(LL_RX | LL_W_FILE | \
			 LANDLOCK_ACCESS_FS_REMOVE_DIR | \
			 LANDLOCK_ACCESS_FS_REMOVE_FILE | \
			 LANDLOCK_ACCESS_FS_MAKE_DIR | \
			 LANDLOCK_ACCESS_FS_MAKE_REG | \
			 LANDLOCK_ACCESS_FS_MAKE_SOCK | \
			 LANDLOCK_ACCESS_FS_MAKE_FIFO | \
			 LANDLOCK_ACCESS_FS_MAKE_SYM | \
			 LANDLOCK_ACCESS_FS_REFER)
/* The rights that make sense on a file (not a directory). */
#define LL_FILE_RIGHTS	(LL_X | LL_R_FILE | LL_W_FILE | \
			 LANDLOCK_ACCESS_FS_IOCTL_DEV)

/* The system, read-only; absent paths are skipped. */
static const struct {
	const char	*path;
	uint64_t	 access;
} landlock_system[] = {
	{ "/usr",	LL_RX },
	{ "/bin",	LL_RX },
	{ "/sbin",	LL_RX },
	{ "/lib",	LL_RX },
	{ "/lib32",	LL_RX },
	{ "/lib64",	LL_RX },
	{ "/libx32",	LL_RX },
	{ "/opt",	LL_RX },
	{ "/etc",	LL_RO },
	{ "/proc",	LL_RO },
	{ "/sys",	LL_RO },
	/* /etc/resolv.conf often points here. */
	{ "/run/systemd/resolve", LL_RO },
	{ "/dev/null",	LL_DEV },
	{ "/dev/zero",	LL_DEV },
	{ "/dev/full",	LL_DEV },
	{ "/dev/random", LL_R_FILE },
	{ "/dev/urandom", LL_R_FILE },
	{ "/dev/tty",	LL_DEV },
	{ "/dev/ptmx",	LL_DEV },
	{ "/dev/pts",	LL_DEV | LL_R_DIR },
};

static int
landlock_create_ruleset(const struct ll_ruleset_attr *attr, size_t size,
    uint32_t flags)
{
	return (int)syscall(SYS_landlock_create_ruleset, attr, size, flags);
}

static int
landlock_add_rule(int fd, const struct landlock_path_beneath_attr *pb)
{
	return (int)syscall(SYS_landlock_add_rule, fd,
	    LANDLOCK_RULE_PATH_BENEATH, pb, 0);
}

static int
landlock_restrict_self(int fd, uint32_t flags)
{
	return (int)syscall(SYS_landlock_restrict_self, fd, flags);
}

int
sandbox_landlock_abi(void)
{
	int	abi;

	abi = landlock_create_ruleset(NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);
	return abi < 0 ? 0 : abi;
}

static uint64_t
landlock_handled(int abi)
{
	uint64_t	fs = LL_FS_ABI1;

	if (abi >= LL_ABI_REFER)
		fs |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= LL_ABI_TRUNCATE)
		fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= LL_ABI_IOCTL_DEV)
		fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return fs;
}

/*
 * Adds one path.  Returns 0, 1 if the path does not exist (the caller
 * decides whether that matters), -1 on error.
 */
static int
landlock_add_path(int rsfd, uint64_t handled, const char *path,
    uint64_t access, char *err, size_t errlen)
{
	struct landlock_path_beneath_attr	pb;
	struct stat				st;
	int					fd, saved;

	if ((fd = open(path, O_PATH | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 1;
		snprintf(err, errlen, "landlock: %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		saved = errno;
		close(fd);
		snprintf(err, errlen, "landlock: %s: %s", path,
		    strerror(saved));
		return -1;
	}
	memset(&pb, 0, sizeof pb);
	pb.allowed_access = access & handled;
	if (!S_ISDIR(st.st_mode))
		pb.allowed_access &= LL_FILE_RIGHTS;
	pb.parent_fd = fd;
	if (landlock_add_rule(rsfd, &pb) == -1) {
		saved = errno;
		close(fd);
		snprintf(err, errlen, "landlock: add %s: %s", path,
		    strerror(saved));
		return -1;
	}
	close(fd);
	return 0;
}

/* Adds a path the caller asked for: it must exist. */
static int
landlock_add_conf(int rsfd, uint64_t handled, const char *path,
    uint64_t access, char *err, size_t errlen)
{
	int	rc;

	if (path == NULL)
		return 0;
	if ((rc = landlock_add_path(rsfd, handled, path, access, err,
	    errlen)) == 1) {
		snprintf(err, errlen, "landlock: %s: %s", path,
		    strerror(ENOENT));
		return -1;
	}
	return rc;
}

/*
 * Builds the ruleset while the process may still read everything.  Sets
 * *rsfd to the ruleset (or -1 when Landlock is off or missing) and *abi.
 * Returns -1 on error; a warning about a weaker sandbox goes into err.
 */
int
sandbox_landlock_prepare(const struct sandbox_conf *sc, int *rsfd, int *abi,
    char *err, size_t errlen)
{
	struct ll_ruleset_attr	attr;
	uint64_t		handled;
	size_t			i;
	int			fd;

	*rsfd = -1;
	*abi = 0;
	if (sc->landlock == SANDBOX_LANDLOCK_OFF)
		return 0;
	if ((*abi = sandbox_landlock_abi()) == 0) {
		snprintf(err, errlen, "landlock: not supported by the kernel");
		return sc->landlock == SANDBOX_LANDLOCK_REQUIRED ? -1 : 0;
	}
	if (*abi < LL_ABI_SCOPE) {
		snprintf(err, errlen, "landlock: ABI %d lacks signal and "
		    "abstract socket scoping (needs %d)", *abi, LL_ABI_SCOPE);
		if (sc->landlock == SANDBOX_LANDLOCK_REQUIRED)
			return -1;
	}

	handled = landlock_handled(*abi);
	memset(&attr, 0, sizeof attr);
	attr.handled_access_fs = handled;
	/* Network stays open: the CLI talks to the API over TCP. */
	if (*abi >= LL_ABI_SCOPE)
		attr.scoped = LANDLOCK_SCOPE_SIGNAL |
		    LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
	if ((fd = landlock_create_ruleset(&attr, sizeof attr, 0)) == -1) {
		snprintf(err, errlen, "landlock: create ruleset: %s",
		    strerror(errno));
		return -1;
	}

	for (i = 0; i < sizeof landlock_system / sizeof landlock_system[0];
	    i++) {
		if (landlock_add_path(fd, handled, landlock_system[i].path,
		    landlock_system[i].access, err, errlen) == -1)
			goto fail;
	}
	if (landlock_add_conf(fd, handled, sc->workdir, LL_RW, err,
	    errlen) == -1 ||
	    landlock_add_conf(fd, handled, sc->tmpdir, LL_RW, err,
	    errlen) == -1 ||
	    landlock_add_conf(fd, handled, sc->config_dir, LL_RW, err,
	    errlen) == -1)
		goto fail;
	for (i = 0; sc->rx_paths != NULL && sc->rx_paths[i] != NULL; i++)
		if (landlock_add_conf(fd, handled, sc->rx_paths[i], LL_RX,
		    err, errlen) == -1)
			goto fail;
	for (i = 0; sc->rw_paths != NULL && sc->rw_paths[i] != NULL; i++)
		if (landlock_add_conf(fd, handled, sc->rw_paths[i], LL_RW,
		    err, errlen) == -1)
			goto fail;
	*rsfd = fd;
	return 0;

fail:
	close(fd);
	return -1;
}

/* Enforces the ruleset; needs no_new_privs.  Closes rsfd. */
int
sandbox_landlock_enforce(int rsfd, int abi, char *err, size_t errlen)
{
	uint32_t	flags = 0;
	int		saved;

	if (rsfd == -1)
		return 0;
	/* Audit the denials of the program we are about to exec. */
	if (abi >= LL_ABI_LOG)
		flags |= LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON;
	if (landlock_restrict_self(rsfd, flags) == -1) {
		saved = errno;
		close(rsfd);
		snprintf(err, errlen, "landlock: restrict self: %s",
		    strerror(saved));
		return -1;
	}
	close(rsfd);
	return 0;
}
