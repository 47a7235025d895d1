/* Small helpers shared by all programs. */
#ifndef HP_UTIL_H
#define HP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN	36

uint64_t	util_now_ms(void);		/* CLOCK_MONOTONIC */
uint64_t	util_now_us(void);
/* A random (version 4) UUID into buf[UUID_STR_LEN + 1]. */
void		util_uuid(char *buf);
int		util_set_nonblock(int fd);
int		util_set_cloexec(int fd, int on);
/* mkdir -p with mode for created components; 0 or -1 (errno). */
int		util_mkdirs(const char *path, unsigned int mode);

#endif
