/*
 * The CLI's can_use_tool questions: answered by the gate, or put to the
 * app (approvals "client") and answered when it decides or times out.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/json.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/xmalloc.h"
#include "worker/bridge.h"
#include "worker/worker.h"

static void	worker_approval_timeout(evutil_socket_t, short, void *);

/*
 * Answers a control request of the CLI: success with response (consumed),
 * or, when response is NULL, an error saying why.
 */
static void
worker_control_answer(const char *request_id, cJSON *response,
    const char *why)
{
	cJSON	*o = cJSON_CreateObject(), *r;
	char	*s;

	cJSON_AddStringToObject(o, "type", "control_response");
	r = cJSON_AddObjectToObject(o, "response");
	cJSON_AddStringToObject(r, "subtype", response != NULL ? "success" :
	    "error");
	cJSON_AddStringToObject(r, "request_id", request_id);
	if (response != NULL)
		cJSON_AddItemToObject(r, "response", response);
	else
		cJSON_AddStringToObject(r, "error", why);
	s = json_print(o);
	cli_write(ws.cli, s, strlen(s));
	cJSON_free(s);
	cJSON_Delete(o);
}

static struct approval *
worker_approval_find(const char *request_id)
{
	size_t	i;

	for (i = 0; i < WORKER_APPROVALS_MAX; i++)
		if (ws.approvals[i].request_id != NULL &&
		    strcmp(ws.approvals[i].request_id, request_id) == 0)
			return &ws.approvals[i];
	return NULL;
}

/* The question is settled: the master stops offering it to clients. */
static void
worker_approval_end(struct approval *a)
{
	struct msg_approval	ap;

	memset(&ap, 0, sizeof ap);
	ap.request_id = a->request_id;
	ap.pending = 0;
	msg_approval_compose(worker_out(), ws.turn, &ap);
	worker_sent();
	event_free(a->timer);
	free(a->request_id);
	free(a->tool_id);
	free(a->tool);
	cJSON_Delete(a->input);
	memset(a, 0, sizeof *a);
}

/* Denies a tool call: permission_denied {by, reason}, and the CLI told. */
/* A denial: the permission_denied event, and the CLI's answer in resp. */
static void
worker_deny_into(cJSON *resp, const char *tool, const char *tool_id,
    const char *by, const char *reason)
{
	cJSON	*ev = cJSON_CreateObject();

	cJSON_AddStringToObject(ev, "tool_id", tool_id != NULL ? tool_id : "");
	cJSON_AddStringToObject(ev, "name", tool != NULL ? tool : "");
	cJSON_AddStringToObject(ev, "by", by);
	cJSON_AddStringToObject(ev, "reason", reason);
	worker_bridge_event(NULL, "permission_denied", ev);
	if (tool_id != NULL)
		bridge_permission_denied(ws.bridge, tool_id);
	cJSON_AddStringToObject(resp, "behavior", "deny");
	cJSON_AddStringToObject(resp, "message", reason);
}

static void
worker_deny(const char *request_id, const char *tool, const char *tool_id,
    const char *by, const char *reason)
{
	cJSON	*resp = cJSON_CreateObject();

	worker_deny_into(resp, tool, tool_id, by, reason);
	worker_control_answer(request_id, resp, NULL);
}

static void
worker_allow(const char *request_id, const cJSON *input)
{
	cJSON	*resp = cJSON_CreateObject();

	/* Allowing means echoing the input back (or the app's version). */
	cJSON_AddStringToObject(resp, "behavior", "allow");
	cJSON_AddItemToObject(resp, "updatedInput", cJSON_Duplicate(input, 1));
	worker_control_answer(request_id, resp, NULL);
}

/* Puts a question the gate let through to the app; 0, or -1 if full. */
static int
worker_approval_ask(const char *request_id, const char *tool,
    const char *tool_id, const cJSON *input)
{
	struct approval		*a = NULL;
	struct msg_approval	 ap;
	struct timeval		 tv;
	cJSON			*ev;
	size_t			 i;

	for (i = 0; i < WORKER_APPROVALS_MAX && a == NULL; i++)
		if (ws.approvals[i].request_id == NULL)
			a = &ws.approvals[i];
	if (a == NULL)
		return -1;
	a->request_id = xstrdup(request_id);
	a->tool_id = tool_id != NULL ? xstrdup(tool_id) : NULL;
	a->tool = xstrdup(tool);
	a->input = cJSON_Duplicate(input, 1);
	a->timer = evtimer_new(ws.base, worker_approval_timeout, a);
	tv = util_ms_tv(ws.approval_timeout_ms);
	evtimer_add(a->timer, &tv);
	/* The master first, so that an answer to the event finds it. */
	memset(&ap, 0, sizeof ap);
	ap.request_id = request_id;
	ap.pending = 1;
	msg_approval_compose(worker_out(), ws.turn, &ap);
	worker_sent();
	ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "request_id", request_id);
	cJSON_AddStringToObject(ev, "tool_id", tool_id != NULL ? tool_id : "");
	cJSON_AddStringToObject(ev, "name", tool);
	cJSON_AddItemToObject(ev, "input", cJSON_Duplicate(input, 1));
	worker_bridge_event(NULL, "permission_request", ev);
	log_debug("permission request %s (%s) put to the app", request_id,
	    tool);
	return 0;
}

static void
worker_approval_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct approval	*a = arg;
	char		 reason[WORKER_ERR_MAX];

	snprintf(reason, sizeof reason, "no answer to the permission request "
	    "within %llu ms", (unsigned long long)ws.approval_timeout_ms);
	worker_deny(a->request_id, a->tool, a->tool_id, "timeout", reason);
	worker_approval_end(a);
}

/* The app's answer (the master checked the first one wins). */
void
worker_permission(const struct msg_permission *p)
{
	const cJSON	*upd = p->updated_input;
	struct approval	*a;
	const char	*by;
	char		 reason[WORKER_ERR_MAX];

	if ((a = worker_approval_find(p->request_id)) == NULL)
		return;		/* settled meanwhile (timeout, cancel) */
	if (!p->allow)
		worker_deny(a->request_id, a->tool, a->tool_id, "client",
		    p->message != NULL ? p->message : "denied by the client");
	else if (cJSON_IsObject(upd) && ws.gate != NULL && gate_check(ws.gate,
	    a->tool, upd, &by, reason, sizeof reason) == -1)
		/* The daemon's rules hold for what the app rewrote too. */
		worker_deny(a->request_id, a->tool, a->tool_id, by, reason);
	else
		worker_allow(a->request_id, cJSON_IsObject(upd) ? upd :
		    a->input);
	worker_approval_end(a);
}

/* The CLI withdrew a question (its turn was interrupted, say). */
void
worker_bridge_control_cancel(void *arg, const char *request_id)
{
	struct approval	*a;
	cJSON		*ev;

	if ((a = worker_approval_find(request_id)) == NULL)
		return;
	ev = cJSON_CreateObject();
	cJSON_AddStringToObject(ev, "request_id", a->request_id);
	cJSON_AddStringToObject(ev, "tool_id", a->tool_id != NULL ?
	    a->tool_id : "");
	cJSON_AddStringToObject(ev, "name", a->tool);
	worker_bridge_event(NULL, "permission_cancelled", ev);
	worker_approval_end(a);
}

/* Every open question denied (an interrupt), or dropped (the CLI left). */
void
worker_approvals_settle(int deny)
{
	size_t	i;

	for (i = 0; i < WORKER_APPROVALS_MAX; i++) {
		if (ws.approvals[i].request_id == NULL)
			continue;
		if (deny && ws.cli != NULL)
			worker_deny(ws.approvals[i].request_id,
			    ws.approvals[i].tool, ws.approvals[i].tool_id,
			    "interrupt", "the turn was interrupted");
		worker_approval_end(&ws.approvals[i]);
	}
}

/* The CLI asks us: can_use_tool is answered here (the sandbox is the line). */
void
worker_bridge_control_request(void *arg, const char *request_id,
    const cJSON *request)
{
	const cJSON	*sub = cJSON_GetObjectItemCaseSensitive(request, "subtype");
	const cJSON	*input;
	const char	*tool, *tool_id, *by;
	char		 reason[WORKER_ERR_MAX];
	cJSON		*resp;

	if (!cJSON_IsString(sub)) {
		worker_control_answer(request_id, NULL, "malformed control request");
		return;
	}
	if (strcmp(sub->valuestring, "can_use_tool") == 0) {
		input = cJSON_GetObjectItemCaseSensitive(request, "input");
		tool = json_str(request, "tool_name");
		tool_id = json_str(request, "tool_use_id");
		/* Asked before it runs: its changes are all seen. */
		fswatch_begin(tool, tool_id);
		resp = cJSON_CreateObject();
		if (ws.gate != NULL && gate_check(ws.gate, tool, input, &by,
		    reason, sizeof reason) == -1)
			worker_deny_into(resp, tool, tool_id, by, reason);
		else if (!cJSON_IsObject(input)) {
			cJSON_AddStringToObject(resp, "behavior", "deny");
			cJSON_AddStringToObject(resp, "message",
			    "malformed tool input");
		} else if (ws.approvals_client) {
			/* The daemon's rules passed it: the app decides. */
			cJSON_Delete(resp);
			if (worker_approval_ask(request_id, tool, tool_id,
			    input) == -1)
				worker_deny(request_id, tool, tool_id, "policy",
				    "too many permission requests waiting");
			return;
		} else {
			/* Allowing means echoing the input back unchanged. */
			cJSON_AddStringToObject(resp, "behavior", "allow");
			cJSON_AddItemToObject(resp, "updatedInput",
			    cJSON_Duplicate(input, 1));
		}
		worker_control_answer(request_id, resp, NULL);
		return;
	}
	worker_control_answer(request_id, NULL, "unsupported control request");
}
