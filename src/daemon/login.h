/* SPDX-License-Identifier: MIT */
/* Password and APOP checks for every protocol: run on an io/jobs thread
 * (yescrypt is slow on purpose) with the job's own account-store handle,
 * answered on the loop thread; failures are recorded in the shared
 * per-address throttle and the answer held back by its delay. */
#ifndef TERN_DAEMON_LOGIN_H
#define TERN_DAEMON_LOGIN_H

#include <stdbool.h>

struct session;

enum login_kind { LOGIN_PASSWORD, LOGIN_APOP };

/* ok: the credentials matched; canon: the account's stored spelling
 * (malloc'd, the callee owns it) or NULL. Runs on the loop thread after the
 * throttle delay (for failures). Not called after login_cancel(). */
typedef void login_done_fn(struct session *s, bool ok, char *canon);

struct login_req;

/* Start a check. secret is the password (or the APOP digest, with
 * timestamp). proto and method are for the log line. */
struct login_req *login_start(struct session *s, const char *proto, enum login_kind kind,
			      const char *method, const char *user, const char *secret,
			      const char *timestamp, login_done_fn *done);
/* The session is going away: no callback; the request frees itself. */
void login_cancel(struct login_req **r);

/* For outcomes judged elsewhere (SCRAM proofs): log, update the throttle.
 * Returns the delay (ms) to hold a failure's answer back, 0 for none. */
unsigned login_record(struct session *s, const char *proto, const char *method,
		      const char *user, bool ok);

#endif
