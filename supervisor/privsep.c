/*
 * The master's privileges.  Started as root, hotplexd binds what needs
 * root, forks the gateway and the spawner (spawner.c, which keeps root to
 * start workers under the sessions' identities), then drops to
 * daemon_user here: no supplementary groups, no capabilities (the
 * bounding set emptied too), no_new_privs, not dumpable.  The code that
 * parses client lines never runs as root.
 *
 * Before the drop, what the master keeps writing is made daemon_user's:
 * state_dir itself and the daemon's own files in it (the store, its
 * journal, the firewall's audit.log), so that a store made by an earlier
 * root master is taken over.  The sessions' HOME and TMPDIR trees stay
 * their own; the spawner removes a TMPDIR.
 *
 * daemon_user must not be a user any session runs as: the daemon's files
 * would then be that session's.  With daemon_user missing (or root) the
 * master stays root, and says so at every start.
 */
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "supervisor/hotplexd.h"

#define PRIVSEP_STATE_MODE	0711	/* sessions pass to their HOME */

/*
 * A sanitizer build stays dumpable: LeakSanitizer ptraces its own process
 * at exit, which a process that is not dumpable may not.
 */
#if defined(__SANITIZE_ADDRESS__)
#define PRIVSEP_DUMPABLE	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PRIVSEP_DUMPABLE	1
#endif
#endif
#ifndef PRIVSEP_DUMPABLE
#define PRIVSEP_DUMPABLE	0
#endif

static struct {
	int	dropped;
	uid_t	uid;
	gid_t	gid;
	char	why[128];	/* not dropped: why */
} ps;

/*
 * The daemon's own files directly in state_dir (the store and its
 * journal, audit.log, an old sessions.json) become daemon_user's;
 * directories (the sessions' home/ and tmp/) and links are left alone.
 */
static void
privsep_state_own(const char *dir, uid_t uid, gid_t gid)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	int		 dfd;

	if (util_mkdirs(dir, PRIVSEP_STATE_MODE) == -1) {
		log_warn("state_dir %s", dir);
		return;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1) {
		log_warn("state_dir %s", dir);
		return;
	}
	if (fstat(dfd, &st) == 0 && (st.st_uid != uid || st.st_gid != gid) &&
	    fchown(dfd, uid, gid) == -1)
		log_warn("chown %s", dir);
	if ((d = fdopendir(dfd)) == NULL) {
		log_warn("state_dir %s", dir);
		close(dfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
		    !S_ISREG(st.st_mode) || (st.st_uid == uid &&
		    st.st_gid == gid))
			continue;
		if (fchownat(dfd, de->d_name, uid, gid,
		    AT_SYMLINK_NOFOLLOW) == -1)
			log_warn("chown %s/%s", dir, de->d_name);
		else
			log_info("state_dir: %s given to %s", de->d_name,
			    hp.conf->daemon_user);
	}
	closedir(d);
}

/*
 * What the master never does once dropped, denied with EPERM (a deny
 * list: the master is libevent, SQLite and OpenSSL, whose calls are many):
 * run or trace a program, start a process (threads stay allowed), change
 * its ids, mount, enter or make namespaces, load kernel code, and signal
 * anything (kill with signal 0, a liveness test, stays).  Off with
 * seccomp = off (valgrind knows no seccomp) and in sanitizer builds
 * (LeakSanitizer clones and ptraces).
 */
static const int privsep_denied[] = {
	SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(fork), SCMP_SYS(vfork),
	SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv),
	SCMP_SYS(process_vm_writev), SCMP_SYS(pidfd_getfd),
	SCMP_SYS(setuid), SCMP_SYS(setgid), SCMP_SYS(setreuid),
	SCMP_SYS(setregid), SCMP_SYS(setresuid), SCMP_SYS(setresgid),
	SCMP_SYS(setfsuid), SCMP_SYS(setfsgid), SCMP_SYS(setgroups),
	SCMP_SYS(capset), SCMP_SYS(mount), SCMP_SYS(umount2),
	SCMP_SYS(pivot_root), SCMP_SYS(chroot), SCMP_SYS(unshare),
	SCMP_SYS(setns), SCMP_SYS(init_module), SCMP_SYS(finit_module),
	SCMP_SYS(delete_module), SCMP_SYS(kexec_load), SCMP_SYS(bpf),
	SCMP_SYS(perf_event_open), SCMP_SYS(userfaultfd), SCMP_SYS(keyctl),
	SCMP_SYS(add_key), SCMP_SYS(request_key), SCMP_SYS(io_uring_setup),
	SCMP_SYS(pidfd_send_signal), SCMP_SYS(tkill), SCMP_SYS(rt_sigqueueinfo),
	SCMP_SYS(rt_tgsigqueueinfo), SCMP_SYS(clone3)
};

static void
privsep_seccomp(void)
{
	scmp_filter_ctx	ctx;
	size_t		i;
	int		rc = 0;

	if (strcmp(hp.conf->seccomp, "off") == 0 || PRIVSEP_DUMPABLE)
		return;
	if ((ctx = seccomp_init(SCMP_ACT_ALLOW)) == NULL)
		fatalx("seccomp_init");
	for (i = 0; rc == 0 && i < sizeof privsep_denied /
	    sizeof privsep_denied[0]; i++)
		rc = seccomp_rule_add(ctx, privsep_denied[i] == SCMP_SYS(clone3) ?
		    SCMP_ACT_ERRNO(ENOSYS) : SCMP_ACT_ERRNO(EPERM),
		    privsep_denied[i], 0);
	/* A clone that is not a thread is a new process. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM),
		    SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ,
		    CLONE_THREAD, 0));
	/* kill(pid, 0) tests the gateway's liveness; no other signal. */
	if (rc == 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM),
		    SCMP_SYS(kill), 1, SCMP_A1(SCMP_CMP_NE, 0, 0));
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc != 0)
		fatalx("the master's seccomp filter: %s", strerror(-rc));
}

static void
privsep_fail(const char *what)
{
	fatal("dropping privileges to %s: %s", hp.conf->daemon_user, what);
}

/*
 * Called as root after the spawner forked and before the event loop.
 * Anything short of a full drop is fatal: we never run half-dropped.
 */
void
privsep_drop(void)
{
	struct passwd	*pw;
	uid_t		 ru, eu, su;
	gid_t		 rg, eg, sg;
	int		 cap;

	if (geteuid() != 0) {
		snprintf(ps.why, sizeof ps.why, "hotplexd is not root");
		return;
	}
	if (strcmp(hp.conf->daemon_user, "root") == 0) {
		snprintf(ps.why, sizeof ps.why, "daemon_user = root");
		return;
	}
	if ((pw = getpwnam(hp.conf->daemon_user)) == NULL) {
		snprintf(ps.why, sizeof ps.why, "daemon_user %s does not exist",
		    hp.conf->daemon_user);
		return;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		snprintf(ps.why, sizeof ps.why, "daemon_user %s is uid or gid 0",
		    hp.conf->daemon_user);
		return;
	}
	/* hotplexd_check_conf refused daemon_user = worker_user. */
	ps.uid = pw->pw_uid;
	ps.gid = pw->pw_gid;
	privsep_state_own(hp.conf->state_dir, ps.uid, ps.gid);

	/*
	 * Emptying the bounding set needs CAP_SETPCAP, which a service
	 * manager may have taken already; no_new_privs below keeps exec from
	 * bringing back a capability either way.
	 */
	if (prctl(PR_CAPBSET_READ, CAP_SETPCAP, 0, 0, 0) == 1)
		for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1)
				privsep_fail("PR_CAPBSET_DROP");
	if (setgroups(1, &ps.gid) == -1)
		privsep_fail("setgroups");
	if (setresgid(ps.gid, ps.gid, ps.gid) == -1)
		privsep_fail("setresgid");
	if (setresuid(ps.uid, ps.uid, ps.uid) == -1)
		privsep_fail("setresuid");
	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1 ||
	    ru != ps.uid || eu != ps.uid || su != ps.uid || rg != ps.gid ||
	    eg != ps.gid || sg != ps.gid)
		privsep_fail("the ids did not change");
	if (setresuid(0, 0, 0) != -1)
		privsep_fail("root could be regained");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		privsep_fail("PR_SET_NO_NEW_PRIVS");
	/* Not dumpable: no process of daemon_user may ptrace us. */
	if (prctl(PR_SET_DUMPABLE, PRIVSEP_DUMPABLE, 0, 0, 0) == -1)
		privsep_fail("PR_SET_DUMPABLE");
	privsep_seccomp();
	ps.dropped = 1;
	log_info("master: now daemon_user %s (uid %u); spawner %ld keeps root",
	    hp.conf->daemon_user, (unsigned)ps.uid, (long)spawner_pid());
}

/*
 * The master's line of the isolation report, said before the drop (at
 * start, before the listeners, and by hotplexd -n): what the drop will
 * do.  A drop that cannot be done as said is fatal.
 */
void
privsep_report(char *buf, size_t len)
{
	struct passwd	*pw;

	if (geteuid() != 0)
		snprintf(buf, len, "master: runs as uid %u, not root: no "
		    "privilege separation needed", (unsigned)geteuid());
	else if (strcmp(hp.conf->daemon_user, "root") == 0)
		snprintf(buf, len, "master: stays root (daemon_user = root): "
		    "UNSAFE, client lines are parsed as root");
	else if ((pw = getpwnam(hp.conf->daemon_user)) == NULL)
		snprintf(buf, len, "master: stays root (daemon_user %s does not "
		    "exist): UNSAFE, client lines are parsed as root",
		    hp.conf->daemon_user);
	else
		snprintf(buf, len, "master: drops to daemon_user %s (uid %u), "
		    "no capabilities, no_new_privs, %s; a spawner keeps root "
		    "to start workers", hp.conf->daemon_user,
		    (unsigned)pw->pw_uid, strcmp(hp.conf->seccomp, "off") == 0 ||
		    PRIVSEP_DUMPABLE ? "no seccomp filter" : "a seccomp filter "
		    "(no exec, process, ptrace, id change or signal)");
}

int
privsep_dropped(void)
{
	return ps.dropped;
}

/* A session never runs as the daemon's own user. */
int
privsep_is_daemon_uid(uid_t uid)
{
	return ps.dropped && uid == ps.uid;
}
