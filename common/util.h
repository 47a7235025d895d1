/* Small helpers shared by all programs. */
#ifndef HP_UTIL_H
#define HP_UTIL_H

#include <sys/socket.h>
#include <sys/time.h>

#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN	36

uint64_t	util_now_ms(void);		/* CLOCK_MONOTONIC */
int		util_errno_capacity(int);	/* out of fds, memory */
uint64_t	util_now_us(void);
int64_t		util_wall_ms(void);		/* CLOCK_REALTIME: rows, audit */
/* Milliseconds as a timeval, for libevent's timers. */
struct timeval	util_ms_tv(uint64_t ms);
/* A random (version 4) UUID into buf[UUID_STR_LEN + 1]. */
void		util_uuid(char *buf);
/* util_hostport() flags. */
#define UTIL_ADDR_LOOPBACK	0x1	/* 127.0.0.0/8 or ::1 only */
#define UTIL_ADDR_PORT0		0x2	/* port 0 (any free port) allowed */
/* "127.0.0.1:9464" or "[::1]:9464" into *ss and *len; 0 or -1. */
int		util_hostport(const char *s, int flags,
		    struct sockaddr_storage *ss, socklen_t *len);
int		util_set_nonblock(int fd);
int		util_set_cloexec(int fd, int on);
/* mkdir -p with mode for created components; 0 or -1 (errno). */
int		util_mkdirs(const char *path, unsigned int mode);
/*
 * rm -r of a directory that a sandboxed process wrote: symbolic links are
 * removed, never followed, at any depth.  0 (also if path is gone) or -1.
 */
int		util_rmtree(const char *path);
/*
 * Renames a file we cannot use to path.bad-<time>[.N], under a name no
 * earlier one has, for a human to look at.  The new name (caller frees),
 * or NULL with errno (EEXIST: every name tried was taken).
 */
char		*util_set_aside(const char *path);

/*
 * A session's private TMPDIR and HOME, keyed by its owner's uid and its
 * name (names are per uid): the worker makes them as root and gives them
 * to the session's identity; the master removes the TMPDIR.
 */
#define UTIL_TMPDIR_PARENT	"%s/tmp"	/* of state_dir */
#define UTIL_TMPDIR_PREFIX	"s."		/* never "." or ".." then */
#define UTIL_TMPDIR_FMT		UTIL_TMPDIR_PARENT "/" UTIL_TMPDIR_PREFIX "%u.%s"
#define UTIL_HOME_PARENT	"%s/home"	/* of state_dir, root's 0711 */
#define UTIL_HOME_OWNER		UTIL_HOME_PARENT "/%u"	/* root's 0711 */
#define UTIL_HOME_FMT		UTIL_HOME_OWNER "/%s"	/* the session's 0700 */

#endif
