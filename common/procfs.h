/* /proc scans: children of a process, for reaping what escaped. */
#ifndef HP_PROCFS_H
#define HP_PROCFS_H

#include <sys/types.h>

#include <stddef.h>

/* Live (non-zombie) children of parent, at most max; returns the count. */
size_t	proc_children(pid_t parent, pid_t *out, size_t max);
/*
 * Children of a single-threaded process, zombies included, at most max:
 * one read of /proc/PID/task/PID/children where the kernel has it (cost
 * by children, not by processes), else proc_children().
 */
size_t	proc_children_any(pid_t parent, pid_t *out, size_t max);
/*
 * Children of every thread of pid (each thread's children file: a
 * multi-threaded CLI forks from any of them), at most max; 0 where the
 * kernel has no children files.
 */
size_t	proc_children_threads(pid_t pid, pid_t *out, size_t max);
/* The parent of pid from /proc/PID/stat, or -1. */
pid_t	proc_parent(pid_t pid);

#endif
