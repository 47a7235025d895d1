/* /proc scans: children of a process, for reaping what escaped. */
#ifndef HP_PROCFS_H
#define HP_PROCFS_H

#include <sys/types.h>

#include <stddef.h>

/* Live (non-zombie) children of parent, at most max; returns the count. */
size_t	proc_children(pid_t parent, pid_t *out, size_t max);

#endif
