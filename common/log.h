/*
 * Logging: one idiom for every process.  Syslog when daemonized, stderr in
 * the foreground, or a file (log_file) for the master and, through their
 * stderr, its workers; text, or JSON lines (log_format = json).  Every line
 * carries the process role ("master", "worker[s1]").
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
/*
 * Where lines go from now on: the file path (appended to; NULL: stderr if
 * foreground, else syslog).  errors_tty: warnings and errors also to
 * stderr until log_detached(), for the terminal that started the daemon.
 * -1 with why.
 */
int	log_open(const char *path, int foreground, int errors_tty, char *err,
	    size_t errlen);
void	log_detached(void);
/* Reopens the file (after a rotation); 0 without one. */
int	log_reopen(void);
/* Lines go to fd (a log file opened for us), which we now own. */
void	log_setfd(int fd);
/* The descriptor lines are written to, for a child's stderr; -1: syslog. */
int	log_getfd(void);
void	log_setjson(int on);
int	log_isjson(void);
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
