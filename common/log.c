/* Logging to syslog or stderr, with a role prefix. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define LOG_ROLE_MAX	64
#define LOG_LINE_MAX	2048

static char	log_role[LOG_ROLE_MAX] = "hotplex";
static int	log_foreground = 1;
static int	log_level = LOG_LVL_INFO;

void
log_init(const char *role, int foreground, int level)
{
	snprintf(log_role, sizeof log_role, "%s", role);
	log_foreground = foreground;
	log_level = level;
	if (!foreground)
		openlog("hotplexd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
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

static void
log_emit(int level, int err, const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char		 msg[LOG_LINE_MAX];
	int		 n;

	if (level > log_level)
		return;
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	if (n < 0)
		return;
	if (err != 0 && (size_t)n < sizeof msg)
		snprintf(msg + n, sizeof msg - n, ": %s", strerror(err));
	if (log_foreground) {
		struct timespec	ts;
		struct tm	tm;
		char		tbuf[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(tbuf, sizeof tbuf, "%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ld %s: %s\n", tbuf, ts.tv_nsec / 1000000L,
		    log_role, msg);
	} else
		syslog(prio[level], "%s: %s", log_role, msg);
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
