/*
 * What confines the sessions, as configured and as this kernel can give
 * it: the identity decision (common/ident.c, fed from the configuration
 * and the user database), the start-up report (one line per layer, at
 * start and by hotplexd -n) and the summary that hello and sessions carry.
 */
#include <sys/types.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "common/ident.h"
#include "common/log.h"
#include "policy/firewall/firewall.h"
#include "policy/sandbox/sandbox.h"
#include "supervisor/hotplexd.h"
#include "supervisor/screen.h"

#define ISOLATION_LINE_MAX	256

int
isolation_ident(uid_t peer_uid, gid_t peer_gid, const gid_t *groups,
    size_t ngroups, uid_t dynamic_uid, struct ident *out, char *err,
    size_t errlen)
{
	struct ident_in	 in;
	struct passwd	*pw;
	struct group	*gr;
	gid_t		 drop[2];
	size_t		 n = 0;

	memset(&in, 0, sizeof in);
	in.daemon_uid = hp.start_euid;	/* the spawner's, not ours */
	in.daemon_gid = hp.start_egid;
	if (ident_mode_parse(hp.conf->session_user, &in.mode) == -1)
		in.mode = IDENT_CREATOR;	/* config_load checked it */
	in.peer_uid = peer_uid;
	in.peer_gid = peer_gid;
	in.peer_groups = groups;
	in.npeer_groups = ngroups;
	in.worker_user = hp.conf->worker_user;
	errno = 0;
	if (in.worker_user != NULL && (pw = getpwnam(in.worker_user)) != NULL) {
		in.worker_user_found = 1;
		in.worker_uid = pw->pw_uid;
		in.worker_gid = pw->pw_gid;
	} else if (in.worker_user != NULL && errno != 0 && errno != ENOENT &&
	    errno != ESRCH && errno != EBADF && errno != EPERM) {
		/* Not "no such user": out of descriptors or memory. */
		snprintf(err, errlen, "cannot read the user database: %s",
		    strerror(errno));
		return -1;	/* errno kept */
	}
	in.dynamic_uid = dynamic_uid;
	/* The daemon's groups stay the daemon's: no tool opens its socket. */
	if (hp.conf->socket_group != NULL &&
	    (gr = getgrnam(hp.conf->socket_group)) != NULL)
		drop[n++] = gr->gr_gid;
	if (hp.conf->admin_group != NULL &&
	    (gr = getgrnam(hp.conf->admin_group)) != NULL)
		drop[n++] = gr->gr_gid;
	in.drop_groups = drop;
	in.ndrop_groups = n;
	if (ident_decide(&in, out, err, errlen) == -1) {
		errno = EPERM;
		return -1;
	}
	if (privsep_is_daemon_uid(out->uid)) {
		snprintf(err, errlen, "sessions never run as daemon_user %s",
		    hp.conf->daemon_user);
		errno = EPERM;
		return -1;
	}
	return 0;
}

static const char *
isolation_seccomp(void)
{
	if (strcmp(hp.conf->seccomp, "on") == 0)
		return SANDBOX_SECCOMP_BUILTIN;
	return hp.conf->seccomp;
}

static const char *
isolation_landlock(void)
{
	return hp.conf->landlock != NULL ? hp.conf->landlock : "off";
}

static size_t
isolation_rules(void)
{
	return hp.screen != NULL && hp.screen->policy != NULL ?
	    policy_nrules(hp.screen->policy) : 0;
}

static void
isolation_limit(char *buf, size_t len, const char *name, uint64_t v)
{
	size_t	n = strlen(buf);

	if (v == 0)
		snprintf(buf + n, len - n, "%s%s unlimited", n ? ", " : "",
		    name);
	else
		snprintf(buf + n, len - n, "%s%s %llu", n ? ", " : "", name,
		    (unsigned long long)v);
}

void
isolation_report(void (*line)(const char *))
{
	char		 buf[ISOLATION_LINE_MAX];
	char		 lim[ISOLATION_LINE_MAX / 2] = "";	/* fits in buf */
	struct passwd	*pw;
	int		 abi = sandbox_landlock_abi();
	const char	*ll = isolation_landlock();

	/* Identity. */
	if (hp.start_euid != 0)
		snprintf(buf, sizeof buf, "identity: hotplexd runs as uid %u, "
		    "not root: every session runs as uid %u too (sessions of "
		    "different users are not kept apart by uid)",
		    (unsigned)hp.start_euid, (unsigned)hp.start_euid);
	else if (strcmp(hp.conf->session_user, "dynamic") == 0)
		snprintf(buf, sizeof buf, "identity: dynamic, each session "
		    "a uid of its own from %s", hp.conf->dynamic_uids);
	else if ((pw = getpwnam(hp.conf->worker_user)) != NULL)
		snprintf(buf, sizeof buf, "identity: creator, sessions run "
		    "as the user who created them; root's as worker_user %s "
		    "(uid %u)", hp.conf->worker_user, (unsigned)pw->pw_uid);
	else
		snprintf(buf, sizeof buf, "identity: creator, sessions run "
		    "as the user who created them; root's are REFUSED: "
		    "worker_user %s does not exist", hp.conf->worker_user);
	line(buf);

	privsep_report(buf, sizeof buf);
	line(buf);

	if (strcmp(hp.conf->seccomp, "off") == 0)
		snprintf(buf, sizeof buf, "seccomp: OFF (seccomp = off): "
		    "UNSAFE, the sessions reach the whole kernel interface");
	else
		snprintf(buf, sizeof buf, "seccomp: %s profile%s%s, other "
		    "architectures killed", strcmp(hp.conf->seccomp, "on") ==
		    0 ? "built-in" : "file", strcmp(hp.conf->seccomp, "on") ==
		    0 ? "" : " ", strcmp(hp.conf->seccomp, "on") == 0 ? "" :
		    hp.conf->seccomp);
	line(buf);

	if (strcmp(ll, "off") == 0)
		snprintf(buf, sizeof buf, "landlock: OFF (landlock = off): "
		    "UNSAFE, sessions may write wherever their uid may");
	else if (abi == 0)
		snprintf(buf, sizeof buf, "landlock: %s, but this kernel has "
		    "no Landlock: sessions are kept apart by uid and seccomp "
		    "only", ll);
	else
		snprintf(buf, sizeof buf, "landlock: %s, ABI %d: writes only "
		    "in workdir, TMPDIR and HOME%s", ll, abi, abi >=
		    SANDBOX_LANDLOCK_SCOPE_ABI ? "; signal and abstract-socket "
		    "scopes" : "; NO signal or abstract-socket scopes "
		    "(needs ABI 6)");
	line(buf);

	isolation_limit(lim, sizeof lim, "nofile", hp.conf->rlimit_nofile);
	isolation_limit(lim, sizeof lim, "nproc", hp.conf->rlimit_nproc);
	isolation_limit(lim, sizeof lim, "cpu", hp.conf->rlimit_cpu);
	isolation_limit(lim, sizeof lim, "fsize", hp.conf->rlimit_fsize);
	snprintf(buf, sizeof buf, "rlimits: %s, core 0", lim);
	line(buf);
	line("privileges: no_new_privs, no capabilities (bounding set "
	    "emptied when hotplexd is root)");

	if (!hp.conf->firewall)
		snprintf(buf, sizeof buf, "firewall: off (firewall = off): "
		    "prompts and tool calls are not screened");
	else
		snprintf(buf, sizeof buf, "firewall: %zu rules",
		    isolation_rules());
	line(buf);

	if (abi == 0)
		line("missing on this kernel: Landlock");
	else if (abi < SANDBOX_LANDLOCK_SCOPE_ABI)
		line("missing on this kernel: Landlock signal and "
		    "abstract-socket scopes (ABI 6)");
	else
		line("missing on this kernel: nothing");
}

cJSON *
isolation_json(void)
{
	cJSON	*o = cJSON_CreateObject(), *l, *r;
	int	 abi = sandbox_landlock_abi();

	cJSON_AddStringToObject(o, "identity", hp.start_euid != 0 ? "daemon" :
	    hp.conf->session_user);
	cJSON_AddBoolToObject(o, "privsep", privsep_dropped());
	if (hp.start_euid == 0 && strcmp(hp.conf->session_user, "creator") == 0)
		cJSON_AddStringToObject(o, "worker_user", hp.conf->worker_user);
	cJSON_AddStringToObject(o, "seccomp", isolation_seccomp());
	l = cJSON_AddObjectToObject(o, "landlock");
	cJSON_AddStringToObject(l, "mode", isolation_landlock());
	cJSON_AddNumberToObject(l, "abi", abi);
	cJSON_AddBoolToObject(l, "scopes", strcmp(isolation_landlock(), "off") !=
	    0 && abi >= SANDBOX_LANDLOCK_SCOPE_ABI);
	r = cJSON_AddObjectToObject(o, "rlimits");
	cJSON_AddNumberToObject(r, "nofile", (double)hp.conf->rlimit_nofile);
	cJSON_AddNumberToObject(r, "nproc", (double)hp.conf->rlimit_nproc);
	cJSON_AddNumberToObject(r, "cpu", (double)hp.conf->rlimit_cpu);
	cJSON_AddNumberToObject(r, "fsize", (double)hp.conf->rlimit_fsize);
	cJSON_AddNumberToObject(r, "core", 0);
	cJSON_AddBoolToObject(o, "no_new_privs", 1);
	cJSON_AddNumberToObject(o, "firewall_rules", (double)isolation_rules());
	return o;
}
