/*
 * What a store backend implements (store.h says what each call means);
 * store.c calls the one store_open() chose.  Private to the store.
 */
#ifndef HP_STORE_BACKEND_H
#define HP_STORE_BACKEND_H

#include "supervisor/store.h"

struct store_backend {
	const char	*name;
	int		 shared;	/* several hosts: leases matter */
	int	 (*open)(const struct store_params *);
	void	 (*close)(void);
	int	 (*is_open)(void);
	const char *(*path)(void);
	void	 (*maintain)(void);
	int	 (*begin)(void);
	int	 (*commit)(void);
	int	 (*session_put)(const struct store_session *);
	int	 (*session_delete)(uid_t, const char *, int64_t);
	int	 (*sessions_load)(store_session_cb, void *);
	int	 (*session_get)(uid_t, const char *, store_session_cb, void *);
	int	 (*totals_put)(const char *);
	char	*(*totals_get)(void);
	int	 (*transcript_append)(uid_t, const char *, int64_t,
		    const char *, uint64_t, const void *, size_t);
	int64_t	 (*transcript_size)(uid_t, const char *, const char *);
	int	 (*transcript_load)(uid_t, const char *, store_transcript_cb,
		    void *);
	int	 (*transcript_delete)(uid_t, const char *);
	int	 (*audit_add)(const struct store_audit *);
	int	 (*audit_query)(const struct store_audit_query *,
		    store_audit_cb, void *);
	long	 (*audit_expire)(int64_t);
	/* NULL with one host: every lease is granted and kept. */
	int	 (*lease_acquire)(uid_t, const char *, int64_t *, char *,
		    size_t);
	int	 (*lease_release)(uid_t, const char *, int64_t);
	int	 (*lease_renew)(store_lease_cb, void *);
	/* NULL: a local file, reachable while state_dir is writable. */
	int	 (*reachable)(char *, size_t);
	/* NULL with one host: its table has them all. */
	int	 (*sessions_all)(store_session_cb, void *);
	int	 (*totals_all)(store_totals_cb, void *);
	int	 (*sessions_stats)(store_session_cb, void *);
};

/*
 * store.c, for the backends: inside a transcript piece's transaction, 0
 * if a piece at offset follows the stored file (or starts it anew at 0),
 * 1 if not (logged: the worker and the store are out of step), -1 if the
 * stored size could not be read.
 */
int	 store_transcript_follows(uid_t, const char *name, const char *path,
	    uint64_t offset);

extern const struct store_backend store_sqlite_backend;
extern const struct store_backend store_pg_backend;

#endif
