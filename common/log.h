/*
 * Logging: one idiom for every process.  Syslog when daemonized, stderr in
 * the foreground; every line carries the process role ("master",
 * "worker[s1]").
 */
#ifndef HP_LOG_H
#define HP_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG
};

void	log_init(const char *role, int foreground, int level);
void	log_setrole(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2)));
void	log_setlevel(int level);
int	log_getlevel(void);
int	log_level_parse(const char *name);

void	log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

#endif
