/* /proc scans. */
#include <sys/types.h>

#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/procfs.h"

#define PROC_STAT_MAX	1024

/* Parses /proc/PID/stat: state and parent after the last ')'. */
static int
proc_stat(const char *pid, char *state, pid_t *ppid)
{
	char	 path[64], buf[PROC_STAT_MAX], *p;
	FILE	*f;
	size_t	 n;
	long	 pp;

	snprintf(path, sizeof path, "/proc/%s/stat", pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %c %ld", state, &pp) != 2)
		return -1;
	*ppid = (pid_t)pp;
	return 0;
}

size_t
proc_children(pid_t parent, pid_t *out, size_t max)
{
	DIR		*d;
	struct dirent	*de;
	size_t		 n = 0;
	char		 state;
	pid_t		 ppid;

	if ((d = opendir("/proc")) == NULL)
		return 0;
	while (n < max && (de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (proc_stat(de->d_name, &state, &ppid) == -1)
			continue;
		if (ppid == parent && state != 'Z')
			out[n++] = (pid_t)strtol(de->d_name, NULL, 10);
	}
	closedir(d);
	return n;
}

size_t
proc_children_any(pid_t parent, pid_t *out, size_t max)
{
	char	 path[64];
	FILE	*f;
	long	 pid;
	size_t	 n = 0;

	snprintf(path, sizeof path, "/proc/%ld/task/%ld/children",
	    (long)parent, (long)parent);
	if ((f = fopen(path, "re")) == NULL)
		return proc_children(parent, out, max);
	while (n < max && fscanf(f, "%ld", &pid) == 1)
		out[n++] = (pid_t)pid;
	fclose(f);
	return n;
}

size_t
proc_children_threads(pid_t pid, pid_t *out, size_t max)
{
	char		 path[64 + NAME_MAX];
	DIR		*d;
	struct dirent	*de;
	FILE		*f;
	long		 kid;
	size_t		 n = 0;

	snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
	if ((d = opendir(path)) == NULL)
		return 0;
	while (n < max && (de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		snprintf(path, sizeof path, "/proc/%ld/task/%s/children",
		    (long)pid, de->d_name);
		if ((f = fopen(path, "re")) == NULL)
			continue;
		while (n < max && fscanf(f, "%ld", &kid) == 1)
			out[n++] = (pid_t)kid;
		fclose(f);
	}
	closedir(d);
	return n;
}

pid_t
proc_parent(pid_t pid)
{
	char	name[24], state;
	pid_t	ppid;

	snprintf(name, sizeof name, "%ld", (long)pid);
	return proc_stat(name, &state, &ppid) == 0 ? ppid : -1;
}
