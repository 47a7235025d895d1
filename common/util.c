/* Small helpers: clocks, UUIDs, fd flags, directories. */
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"

/*
 * Out of descriptors, processes or memory: the client may try later
 * (the capacity error), unlike a spawn that can never work.
 */
int
util_errno_capacity(int e)
{
	return e == EMFILE || e == ENFILE || e == ENOMEM || e == EAGAIN ||
	    e == ENOBUFS;
}

uint64_t
util_now_ms(void)
{
	return util_now_us() / 1000;
}

int64_t
util_wall_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
util_now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

struct timeval
util_ms_tv(uint64_t ms)
{
	struct timeval	tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	return tv;
}

void
util_uuid(char *buf)
{
	unsigned char	r[16];

	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		fatal("getrandom");
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	snprintf(buf, UUID_STR_LEN + 1,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x",
	    r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
	    r[10], r[11], r[12], r[13], r[14], r[15]);
}

int
util_set_nonblock(int fd)
{
	int	fl;

	if ((fl = fcntl(fd, F_GETFL)) == -1)
		return -1;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

int
util_set_cloexec(int fd, int on)
{
	int	fl;

	if ((fl = fcntl(fd, F_GETFD)) == -1)
		return -1;
	fl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
	return fcntl(fd, F_SETFD, fl);
}

int
util_mkdirs(const char *path, unsigned int mode)
{
	char	buf[PATH_MAX], *p;

	if (strlen(path) >= sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, path);
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

/* Levels util_rmtree() goes down; each holds one directory open. */
#define UTIL_RMTREE_DEPTH	64

/*
 * Empties the directory open as dfd (closed here).  Every step is relative
 * to a directory opened without following links, so a link swapped in
 * meanwhile is removed as a link, never followed.
 */
static int
util_rmtree_at(int dfd, int depth)
{
	DIR		*d;
	struct dirent	*de;
	int		 fd, rv = 0;

	if ((d = fdopendir(dfd)) == NULL) {
		close(dfd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0 || errno == ENOENT)
			continue;
		if (errno != EISDIR || depth >= UTIL_RMTREE_DEPTH) {
			rv = -1;
			continue;
		}
		fd = openat(dirfd(d), de->d_name,
		    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1 || util_rmtree_at(fd, depth + 1) == -1 ||
		    unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) == -1)
			rv = -1;
	}
	closedir(d);
	return rv;
}

int
util_rmtree(const char *path)
{
	int	fd;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return errno == ENOENT ? 0 : -1;
	if (util_rmtree_at(fd, 0) == -1)
		return -1;
	if (rmdir(path) == -1 && errno != ENOENT)
		return -1;
	return 0;
}

#define SET_ASIDE_SUFFIX	".bad-"	/* then the time, maybe .N */
#define SET_ASIDE_TRIES		100

char *
util_set_aside(const char *path)
{
	char	*bad;
	int	 i, rc;

	for (i = 0; i < SET_ASIDE_TRIES; i++) {
		if (i == 0)
			xasprintf(&bad, "%s%s%lld", path, SET_ASIDE_SUFFIX,
			    (long long)time(NULL));
		else
			xasprintf(&bad, "%s%s%lld.%d", path, SET_ASIDE_SUFFIX,
			    (long long)time(NULL), i);
		rc = renameat2(AT_FDCWD, path, AT_FDCWD, bad, RENAME_NOREPLACE);
		if (rc == -1 && errno == EINVAL)	/* no NOREPLACE here */
			rc = rename(path, bad);
		if (rc == 0)
			return bad;
		free(bad);
		if (errno != EEXIST)
			return NULL;
	}
	errno = EEXIST;
	return NULL;
}

#define PORT_MAX	65535

int
util_hostport(const char *s, int flags, struct sockaddr_storage *ss,
    socklen_t *len)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 host[INET6_ADDRSTRLEN + 2], *end;
	const char		*colon;
	unsigned long		 port;
	size_t			 n;

	memset(ss, 0, sizeof *ss);
	if ((colon = strrchr(s, ':')) == NULL || colon == s ||
	    (n = (size_t)(colon - s)) >= sizeof host)
		return -1;
	memcpy(host, s, n);
	host[n] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 ||
	    port > PORT_MAX || (port == 0 && !(flags & UTIL_ADDR_PORT0)))
		return -1;
	if (host[0] == '[' && n > 2 && host[n - 1] == ']') {
		host[n - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1 ||
		    ((flags & UTIL_ADDR_LOOPBACK) &&
		    !IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)))
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof *sin6;
		return 0;
	}
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1 ||
	    ((flags & UTIL_ADDR_LOOPBACK) &&
	    (ntohl(sin->sin_addr.s_addr) >> 24) != 127))
		return -1;
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	*len = sizeof *sin;
	return 0;
}
