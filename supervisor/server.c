/*
 * The control socket: created 0660 (group socket_group) in a directory
 * only we can write, accepted from the loop.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/util.h"
#include "common/xmalloc.h"
#include "supervisor/hotplexd.h"

#define SERVER_BACKLOG		128
#define SERVER_SOCKET_MODE	0660
#define SERVER_DIR_MODE		0755

static int		 server_fd = -1;
static int		 server_reserve_fd = -1;	/* for the refusal */
static struct event	*server_ev;
static struct event	*server_pause_ev;	/* resumes accepting */

static void
server_resume(evutil_socket_t fd, short what, void *arg)
{
	if (server_ev != NULL)
		event_add(server_ev, NULL);
}

/*
 * Out of descriptors, one is kept in reserve: given up for a moment, it
 * lets us accept the next client and tell it why (capacity) instead of
 * leaving it to wait in the backlog with no line.
 */
static void
server_reserve(void)
{
	if (server_reserve_fd == -1)
		server_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void
server_refuse(int fd)
{
	cJSON	*o;
	char	*line;
	int	 c;

	if (server_reserve_fd == -1)
		return;
	close(server_reserve_fd);
	server_reserve_fd = -1;
	if ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
		o = proto_error(NULL, NULL, ERR_CAPACITY,
		    "the server is out of file descriptors");
		if ((line = cJSON_PrintUnformatted(o)) != NULL) {
			/* A new socket's buffer takes this whole, or we give up. */
			if (write(c, line, strlen(line)) != -1)
				(void)!write(c, "\n", 1);
			cJSON_free(line);
		}
		cJSON_Delete(o);
		close(c);
	}
	server_reserve();
}

static void
server_accept(evutil_socket_t fd, short what, void *arg)
{
	const struct timeval	backoff = { ACCEPT_PAUSE_S, 0 };
	int			c;

	for (;;) {
		c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c == -1) {
			if (errno == EMFILE || errno == ENFILE) {
				log_warn("accept: pausing %d s",
				    ACCEPT_PAUSE_S);
				server_refuse(fd);
				event_del(server_ev);
				evtimer_add(server_pause_ev, &backoff);
			} else if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("accept");
			return;
		}
		if (hp.shutting_down) {
			close(c);
			continue;
		}
		server_client_new(c);
	}
}

/* A socket file nobody answers on is stale: remove it. */
static int
server_stale(const struct sockaddr_un *sun)
{
	int	fd, r;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	r = connect(fd, (const struct sockaddr *)sun, sizeof *sun);
	close(fd);
	return r == -1 && errno == ECONNREFUSED;
}

int
server_listen(void)
{
	struct sockaddr_un	 sun;
	const char		*path = hp.conf->socket;
	char			 dir[PATH_MAX];
	struct group		*gr = NULL;
	mode_t			 old;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		log_warnx("socket path too long: %s", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	snprintf(dir, sizeof dir, "%s", path);
	if (util_mkdirs(dirname(dir), SERVER_DIR_MODE) == -1) {
		log_warn("mkdir for %s", path);
		return -1;
	}
	if (hp.conf->socket_group != NULL &&
	    (gr = getgrnam(hp.conf->socket_group)) == NULL) {
		log_warnx("socket_group %s: no such group",
		    hp.conf->socket_group);
		return -1;
	}
	if (access(path, F_OK) == 0) {
		if (!server_stale(&sun)) {
			log_warnx("%s: a server is already listening", path);
			return -1;
		}
		unlink(path);
	}
	server_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (server_fd == -1) {
		log_warn("socket");
		return -1;
	}
	old = umask(0117);
	if (bind(server_fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		umask(old);
		log_warn("bind %s", path);
		close(server_fd);
		server_fd = -1;
		return -1;
	}
	umask(old);
	if (chmod(path, SERVER_SOCKET_MODE) == -1 ||
	    (gr != NULL && chown(path, (uid_t)-1, gr->gr_gid) == -1))
		log_warn("setting the mode of %s", path);
	if (listen(server_fd, SERVER_BACKLOG) == -1) {
		log_warn("listen");
		close(server_fd);
		server_fd = -1;
		return -1;
	}
	return 0;
}

void
server_start(void)
{
	server_ev = event_new(hp.base, server_fd, EV_READ | EV_PERSIST,
	    server_accept, NULL);
	event_priority_set(server_ev, HP_PRIO_IO);
	server_pause_ev = evtimer_new(hp.base, server_resume, NULL);
	event_add(server_ev, NULL);
	server_reserve();
}

void
server_close(void)
{
	if (server_ev != NULL) {
		event_free(server_ev);
		server_ev = NULL;
	}
	if (server_pause_ev != NULL) {
		event_free(server_pause_ev);
		server_pause_ev = NULL;
	}
	if (server_reserve_fd != -1) {
		close(server_reserve_fd);
		server_reserve_fd = -1;
	}
	if (server_fd != -1) {
		close(server_fd);
		server_fd = -1;
		unlink(hp.conf->socket);
	}
}
