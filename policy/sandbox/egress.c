/*
 * Egress: a session reaches no network peer but the gateway.  Two layers
 * of their own, stacked on whatever Landlock ruleset and seccomp profile
 * the sandbox also applies (so that egress holds with those off):
 *
 *  - a Landlock ruleset that handles only TCP (ABI 4): connect to the
 *    gateway's ports, bind nothing.  Being in a Landlock domain also keeps
 *    the session from ptrace-reading processes outside it (the gateway);
 *  - a seccomp filter: no AF_INET/AF_INET6 socket but TCP (Landlock does
 *    not see UDP, raw, SCTP or MPTCP), no AF_PACKET, no io_uring (its
 *    operations bypass seccomp), other architectures killed (socketcall).
 *
 * Landlock port rules name ports, not addresses: another host's service on
 * the gateway's port number is reachable too.
 */
#include <sys/socket.h>
#include <sys/syscall.h>

#include <errno.h>
#include <linux/landlock.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "policy/sandbox/sandbox.h"

#ifndef LANDLOCK_RULE_NET_PORT
#define LANDLOCK_RULE_NET_PORT		2
#define LANDLOCK_ACCESS_NET_BIND_TCP	(1ULL << 0)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP	(1ULL << 1)
struct landlock_net_port_attr {
	uint64_t	allowed_access;
	uint64_t	port;
};
#endif

#define EGRESS_LL_ABI	4	/* TCP bind/connect rules */
#define EGRESS_SOCK_TYPE_MASK	0xf
#define EGRESS_SECCOMP_API_KILL_PROCESS	3	/* libseccomp API level */

struct egress_ruleset_attr {
	uint64_t	handled_access_fs;
	uint64_t	handled_access_net;
};

/* Socket types other than SOCK_STREAM, refused for AF_INET/AF_INET6. */
static const int egress_types[] = {
	SOCK_DGRAM, SOCK_RAW, SOCK_RDM, SOCK_SEQPACKET, SOCK_DCCP, SOCK_PACKET,
};
static const int egress_families[] = { AF_INET, AF_INET6 };

static int
egress_ruleset(const struct sandbox_conf *sc, int *rsfd, char *err,
    size_t errlen)
{
	struct egress_ruleset_attr	attr;
	struct landlock_net_port_attr	np;
	size_t				i;
	int				fd, abi;

	*rsfd = -1;
	abi = sandbox_landlock_abi();
	if (abi < EGRESS_LL_ABI) {
		snprintf(err, errlen, "egress: Landlock ABI %d has no TCP "
		    "rules (needs %d)", abi, EGRESS_LL_ABI);
		return sc->egress == SANDBOX_EGRESS_REQUIRED ? -1 : 1;
	}
	memset(&attr, 0, sizeof attr);
	attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP |
	    LANDLOCK_ACCESS_NET_CONNECT_TCP;
	if ((fd = (int)syscall(SYS_landlock_create_ruleset, &attr,
	    sizeof attr, 0)) == -1) {
		snprintf(err, errlen, "egress: create ruleset: %s",
		    strerror(errno));
		return -1;
	}
	for (i = 0; i < SANDBOX_EGRESS_PORTS_MAX; i++) {
		if (sc->egress_ports[i] == 0)
			continue;
		memset(&np, 0, sizeof np);
		np.allowed_access = LANDLOCK_ACCESS_NET_CONNECT_TCP;
		np.port = sc->egress_ports[i];
		if (syscall(SYS_landlock_add_rule, fd, LANDLOCK_RULE_NET_PORT,
		    &np, 0) == -1) {
			snprintf(err, errlen, "egress: port %u: %s",
			    (unsigned)sc->egress_ports[i], strerror(errno));
			close(fd);
			return -1;
		}
	}
	*rsfd = fd;
	return 0;
}

void *
sandbox_egress_filter(char *err, size_t errlen)
{
	scmp_filter_ctx	ctx;
	size_t		i, j;
	int		rc = 0;

	if ((ctx = seccomp_init(SCMP_ACT_ALLOW)) == NULL) {
		snprintf(err, errlen, "egress: seccomp_init failed");
		return NULL;
	}
	rc |= seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
	    seccomp_api_get() >= EGRESS_SECCOMP_API_KILL_PROCESS ?
	    SCMP_ACT_KILL_PROCESS : SCMP_ACT_KILL);
	for (i = 0; i < sizeof egress_families / sizeof egress_families[0];
	    i++) {
		for (j = 0; j < sizeof egress_types / sizeof egress_types[0];
		    j++)
			rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM),
			    SCMP_SYS(socket), 2,
			    SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)
			    egress_families[i], 0),
			    SCMP_A1(SCMP_CMP_MASKED_EQ, EGRESS_SOCK_TYPE_MASK,
			    (scmp_datum_t)egress_types[j]));
		/* SOCK_STREAM but not TCP: SCTP, MPTCP. */
		rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM),
		    SCMP_SYS(socket), 2,
		    SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)egress_families[i], 0),
		    SCMP_A2(SCMP_CMP_GT, IPPROTO_TCP, 0));
	}
	rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
	    SCMP_A0(SCMP_CMP_EQ, AF_PACKET, 0));
	rc |= seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS),
	    SCMP_SYS(io_uring_setup), 0);
	if (rc != 0) {
		snprintf(err, errlen, "egress: seccomp rules: %s",
		    strerror(-rc));
		seccomp_release(ctx);
		return NULL;
	}
	return ctx;
}

/*
 * Builds both layers.  Returns 0, or -1 on error; a warning (Landlock
 * without TCP rules, best effort) goes into err with *rsfd == -1.
 */
int
sandbox_egress_prepare(const struct sandbox_conf *sc, int *rsfd, void **filter,
    char *err, size_t errlen)
{
	*rsfd = -1;
	*filter = NULL;
	if (sc->egress == SANDBOX_EGRESS_OFF)
		return 0;
	if (egress_ruleset(sc, rsfd, err, errlen) == -1)
		return -1;
	/* The spawner's compiled program is loaded as is (seccomp.c). */
	if (sandbox_seccomp_egress_ready())
		return 0;
	/* Without seccomp (an old kernel, valgrind), "on" does its best. */
	if ((*filter = sandbox_egress_filter(err, errlen)) == NULL &&
	    sc->egress == SANDBOX_EGRESS_REQUIRED) {
		if (*rsfd != -1)
			close(*rsfd);
		*rsfd = -1;
		return -1;
	}
	return 0;
}

/* Needs no_new_privs.  Closes rsfd, frees filter. */
int
sandbox_egress_enforce(const struct sandbox_conf *sc, int rsfd, void *filter,
    char *err, size_t errlen)
{
	int	rc = 0;

	if (rsfd != -1) {
		if (syscall(SYS_landlock_restrict_self, rsfd, 0) == -1) {
			snprintf(err, errlen, "egress: restrict self: %s",
			    strerror(errno));
			rc = -1;
		}
		close(rsfd);
	}
	if (filter != NULL) {
		/* No seccomp in this kernel (or valgrind): "on" goes on. */
		if (rc == 0 && (rc = seccomp_load(filter)) != 0) {
			snprintf(err, errlen, "egress: seccomp load: %s",
			    strerror(-rc));
			rc = sc->egress == SANDBOX_EGRESS_REQUIRED ? -1 : 0;
		}
		seccomp_release(filter);
	} else if (sc->egress != SANDBOX_EGRESS_OFF &&
	    sandbox_seccomp_egress_ready() && rc == 0 &&
	    sandbox_seccomp_egress_load(err, errlen) == -1)
		rc = sc->egress == SANDBOX_EGRESS_REQUIRED ? -1 : 0;
	return rc;
}
