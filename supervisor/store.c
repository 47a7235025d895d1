/*
 * store.h: hands each call to the backend store_open() chose, SQLite in
 * state_dir unless store names a PostgreSQL database.  A call before a
 * successful open fails as the backends' do when they are not open.
 */
#include <sys/types.h>

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "supervisor/store-backend.h"
#include "supervisor/store.h"

#define STORE_ONE_HOST_FENCE	1	/* SQLite: every lease, for ever */

static const struct store_backend *store_be;

int
store_url_is_pg(const char *url)
{
	return url != NULL && (strncmp(url, "postgresql://", 13) == 0 ||
	    strncmp(url, "postgres://", 11) == 0);
}

int
store_open(const struct store_params *p)
{
	if (store_be != NULL)
		store_be->close();
	store_be = store_url_is_pg(p->url) ? &store_pg_backend :
	    &store_sqlite_backend;
	return store_be->open(p);
}

void
store_close(void)
{
	if (store_be != NULL)
		store_be->close();
	store_be = NULL;
}

int
store_is_open(void)
{
	return store_be != NULL && store_be->is_open();
}

int
store_shared(void)
{
	return store_be != NULL && store_be->shared;
}

const char *
store_path(void)
{
	return store_be != NULL ? store_be->path() : NULL;
}

void
store_maintain(void)
{
	if (store_be != NULL)
		store_be->maintain();
}

int
store_begin(void)
{
	return store_be != NULL ? store_be->begin() : -1;
}

int
store_commit(void)
{
	return store_be != NULL ? store_be->commit() : -1;
}

int
store_session_put(const struct store_session *s)
{
	return store_be != NULL ? store_be->session_put(s) : -1;
}

int
store_session_delete(uid_t uid, const char *name, int64_t fence)
{
	return store_be != NULL ? store_be->session_delete(uid, name, fence) :
	    -1;
}

int
store_sessions_load(store_session_cb cb, void *arg)
{
	return store_be != NULL ? store_be->sessions_load(cb, arg) : -1;
}

int
store_session_get(uid_t uid, const char *name, store_session_cb cb,
    void *arg)
{
	return store_be != NULL ? store_be->session_get(uid, name, cb, arg) :
	    -1;
}

int
store_totals_put(const char *json)
{
	return store_be != NULL ? store_be->totals_put(json) : -1;
}

char *
store_totals_get(void)
{
	return store_be != NULL ? store_be->totals_get() : NULL;
}

int
store_transcript_append(uid_t uid, const char *name, int64_t fence,
    const char *path, uint64_t offset, const void *data, size_t len)
{
	return store_be != NULL ? store_be->transcript_append(uid, name,
	    fence, path, offset, data, len) : -1;
}

int
store_transcript_follows(uid_t uid, const char *name, const char *path,
    uint64_t offset)
{
	int64_t	have;

	if (offset == 0)
		return 0;
	if ((have = store_be->transcript_size(uid, name, path)) == -1)
		return -1;
	if ((uint64_t)have == offset)
		return 0;
	log_warnx("store: transcript %s of %s: a piece at %llu, the stored "
	    "file ends at %lld", path, name, (unsigned long long)offset,
	    (long long)have);
	return 1;
}

int64_t
store_transcript_size(uid_t uid, const char *name, const char *path)
{
	return store_be != NULL ? store_be->transcript_size(uid, name, path) :
	    -1;
}

int
store_transcript_load(uid_t uid, const char *name, store_transcript_cb cb,
    void *arg)
{
	return store_be != NULL ? store_be->transcript_load(uid, name, cb,
	    arg) : -1;
}

int
store_transcript_delete(uid_t uid, const char *name)
{
	return store_be != NULL ? store_be->transcript_delete(uid, name) : -1;
}

int
store_audit_add(const struct store_audit *a)
{
	return store_be != NULL ? store_be->audit_add(a) : -1;
}

int
store_audit_query(const struct store_audit_query *q, store_audit_cb cb,
    void *arg)
{
	return store_be != NULL ? store_be->audit_query(q, cb, arg) : -1;
}

long
store_audit_expire(int64_t before_ms)
{
	return store_be != NULL ? store_be->audit_expire(before_ms) : -1;
}

int
store_lease_acquire(uid_t uid, const char *name, int64_t *fence,
    char *holder, size_t holderlen)
{
	if (holderlen > 0)
		holder[0] = '\0';
	if (store_be == NULL || store_be->lease_acquire == NULL) {
		*fence = STORE_ONE_HOST_FENCE;
		return 0;
	}
	return store_be->lease_acquire(uid, name, fence, holder, holderlen);
}

int
store_lease_release(uid_t uid, const char *name, int64_t fence)
{
	if (store_be == NULL || store_be->lease_release == NULL)
		return 0;
	return store_be->lease_release(uid, name, fence);
}

int
store_lease_renew(store_lease_cb cb, void *arg)
{
	if (store_be == NULL || store_be->lease_renew == NULL)
		return 0;
	return store_be->lease_renew(cb, arg);
}

int
store_sessions_all(store_session_cb cb, void *arg)
{
	if (store_be == NULL || store_be->sessions_all == NULL)
		return 0;
	return store_be->sessions_all(cb, arg);
}

int
store_totals_all(store_totals_cb cb, void *arg)
{
	if (store_be == NULL || store_be->totals_all == NULL)
		return 0;
	return store_be->totals_all(cb, arg);
}

int
store_sessions_stats(store_session_cb cb, void *arg)
{
	if (store_be == NULL || store_be->sessions_stats == NULL)
		return 0;
	return store_be->sessions_stats(cb, arg);
}

int
store_reachable(char *detail, size_t len)
{
	if (store_be == NULL) {
		snprintf(detail, len, "not open");
		return 0;
	}
	if (store_be->reachable == NULL) {
		snprintf(detail, len, "%s", "");
		return 1;
	}
	return store_be->reachable(detail, len);
}
