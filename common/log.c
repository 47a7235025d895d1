/*
 * Logging to syslog, stderr or a file, as text or as JSON lines, with a
 * role prefix.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"

#define LOG_ROLE_MAX	64
#define LOG_LINE_MAX	2048

#define LOG_FILE_MODE	0640

static char	 log_role[LOG_ROLE_MAX] = "hotplex";
static int	 log_foreground = 1;	/* else syslog */
static int	 log_level = LOG_LVL_INFO;
static int	 log_json;
static int	 log_dated;		/* stderr is a file: stamp the date */
static int	 log_errors_tty;	/* errors also to stderr, until detached */
static int	 log_fd = -1;		/* log_file, or -1 */
static char	*log_path;		/* log_file, owned */

void
log_init(const char *role, int foreground, int level)
{
	struct stat	st;

	snprintf(log_role, sizeof log_role, "%s", role);
	log_foreground = foreground;
	log_level = level;
	/* A worker's stderr may be the master's log file. */
	log_dated = fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode);
	if (!foreground)
		openlog("hotplexd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void
log_setjson(int on)
{
	log_json = on;
}

int
log_isjson(void)
{
	return log_json;
}

int
log_open(const char *path, int foreground, int errors_tty, char *err,
    size_t errlen)
{
	int	fd = -1;

	if (path != NULL && (fd = open(path, O_WRONLY | O_APPEND | O_CREAT |
	    O_CLOEXEC, LOG_FILE_MODE)) == -1) {
		snprintf(err, errlen, "log_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (log_fd != -1)
		close(log_fd);
	free(log_path);
	log_path = path != NULL ? strdup(path) : NULL;
	log_fd = fd;
	if (fd != -1)
		log_dated = 1;
	log_errors_tty = errors_tty;
	if (fd == -1 && !foreground && log_foreground)
		openlog("hotplexd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	log_foreground = foreground;
	return 0;
}

void
log_detached(void)
{
	log_errors_tty = 0;
}

int
log_reopen(void)
{
	char	err[LOG_LINE_MAX], *path;
	int	rc;

	if (log_path == NULL)
		return 0;
	path = strdup(log_path);
	if (path == NULL)
		return -1;
	if ((rc = log_open(path, log_foreground, log_errors_tty, err,
	    sizeof err)) == -1)
		log_warnx("reopen: %s; still writing to the old file", err);
	free(path);
	return rc;
}

void
log_setfd(int fd)
{
	if (log_fd != -1 && log_fd != fd)
		close(log_fd);
	log_fd = fd;
	log_dated = 1;
}

int
log_getfd(void)
{
	if (log_fd != -1)
		return log_fd;
	return log_foreground ? STDERR_FILENO : -1;
}

void
log_setrole(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(log_role, sizeof log_role, fmt, ap);
	va_end(ap);
}

void
log_setlevel(int level)
{
	log_level = level;
}

int
log_getlevel(void)
{
	return log_level;
}

int
log_level_parse(const char *name)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	size_t		   i;

	for (i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(name, names[i]) == 0)
			return (int)i;
	return -1;
}

/* A JSON string's body: quotes, backslashes and control bytes escaped. */
static size_t
log_json_escape(char *dst, size_t size, const char *src, size_t n)
{
	size_t		i, o = 0;
	unsigned char	c;

	for (i = 0; i < n && o + 7 < size; i++) {
		c = (unsigned char)src[i];
		if (c == '"' || c == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(dst + o, size - o, "\\u%04x", c);
		else
			dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return o;
}

/*
 * One line: "time role: message" (time alone on a terminal, date and time
 * in a file), or a JSON object {time, level, process, session, message}
 * where the role "worker[s1]" gives process "worker" and session "s1".
 */
static int
log_format(char *line, size_t size, int level, char *msg)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	struct timespec	 ts;
	struct tm	 tm;
	char		 tbuf[32], proc[LOG_ROLE_MAX * 6 + 1];
	char		 sess[LOG_ROLE_MAX * 6 + 1], body[LOG_LINE_MAX * 6 + 1];
	const char	*br;
	size_t		 plen;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (!log_json) {
		localtime_r(&ts.tv_sec, &tm);
		strftime(tbuf, sizeof tbuf, log_dated ? "%Y-%m-%d %H:%M:%S" :
		    "%H:%M:%S", &tm);
		return snprintf(line, size, "%s.%03ld %s: %s\n", tbuf,
		    ts.tv_nsec / 1000000L, log_role, msg);
	}
	gmtime_r(&ts.tv_sec, &tm);
	strftime(tbuf, sizeof tbuf, "%Y-%m-%dT%H:%M:%S", &tm);
	br = strchr(log_role, '[');
	plen = br != NULL ? (size_t)(br - log_role) : strlen(log_role);
	log_json_escape(proc, sizeof proc, log_role, plen);
	if (br != NULL)
		log_json_escape(sess, sizeof sess, br + 1, strcspn(br + 1, "]"));
	json_utf8_clean(msg);	/* a CLI's stderr may hold any byte */
	log_json_escape(body, sizeof body, msg, strlen(msg));
	return snprintf(line, size, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\","
	    "\"process\":\"%s\"%s%s%s,\"message\":\"%s\"}\n", tbuf,
	    ts.tv_nsec / 1000000L, names[level], proc,
	    br != NULL ? ",\"session\":\"" : "", br != NULL ? sess : "",
	    br != NULL ? "\"" : "", body);
}

static void
log_emit(int level, int err, const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char		 msg[LOG_LINE_MAX], line[LOG_LINE_MAX * 8];
	int		 n, fd;

	if (level > log_level)
		return;
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	if (n < 0)
		return;
	if (err != 0 && (size_t)n < sizeof msg)
		snprintf(msg + n, sizeof msg - n, ": %s", strerror(err));
	fd = log_getfd();
	if (fd == -1) {
		syslog(prio[level], "%s: %s", log_role, msg);
		if (log_errors_tty && level <= LOG_LVL_WARN)
			fprintf(stderr, "hotplexd: %s\n", msg);
		return;
	}
	n = log_format(line, sizeof line, level, msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line) {
		n = sizeof line - 1;
		line[n - 1] = '\n';
	}
	/* One write per line: lines of processes sharing a file stay whole. */
	(void)!write(fd, line, (size_t)n);
	if (log_errors_tty && level <= LOG_LVL_WARN && fd != STDERR_FILENO)
		fprintf(stderr, "hotplexd: %s\n", msg);
}

#define LOG_FN(name, lvl, witherr)				\
void								\
name(const char *fmt, ...)					\
{								\
	va_list	ap;						\
	int	saved = errno;					\
								\
	va_start(ap, fmt);					\
	log_emit(lvl, witherr ? saved : 0, fmt, ap);		\
	va_end(ap);						\
	errno = saved;						\
}

LOG_FN(log_warn, LOG_LVL_WARN, 1)
LOG_FN(log_warnx, LOG_LVL_WARN, 0)
LOG_FN(log_info, LOG_LVL_INFO, 0)
LOG_FN(log_debug, LOG_LVL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
	va_list	ap;
	int	saved = errno;

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	log_emit(LOG_LVL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
