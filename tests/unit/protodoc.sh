#!/bin/sh
# hotplex-protocol(7) names everything the daemon can put on the wire: every
# op of the dispatch table, every event type a worker or the master emits,
# every error code, every reply type and every "by" of permission_denied,
# each taken from the sources, so that a new one without its documentation
# fails here.  TAP on stdout; run from the top of the tree.
doc=man/hotplex-protocol.7
n=0 failed=0

# A name documented: with its own entry (.It Cm/Li name, maybe in a list
# of names) when strict, else also in running text (.Li/.Qq name).
documented()
{
	grep -Eq "^\.It (Cm|Li) ([a-z_]+ , )*$1( ,|$)" "$doc" && return 0
	[ "$strict" = strict ] && return 1
	grep -Eq "^\.(Cm|Li|Qq|Dq) \"?$1\"?( |,|$)" "$doc"
}

check_names()
{
	kind=$1 names=$2 strict=$3
	if [ -z "$names" ]; then
		n=$((n + 1))
		echo "not ok $n - no $kind found in the sources (pattern stale?)"
		failed=$((failed + 1))
		return
	fi
	for name in $names; do
		n=$((n + 1))
		if documented "$name"; then
			echo "ok $n - $kind $name is in hotplex-protocol(7)"
		else
			echo "not ok $n - $kind $name is not in hotplex-protocol(7)"
			failed=$((failed + 1))
		fi
	done
}

# Ops: the entries of the dispatch table, { "name", handler, sessions }.
ops=$(grep -hE '^[[:space:]]*\{ "[a-z_]+",[[:space:]]+[a-z_]+_op_[a-z_]+(, [01])? \}' \
    supervisor/*.c | sed -E 's/^[^"]*"([a-z_]+)".*/\1/' | sort -u)
# Events: what session_emit() and the worker's bridge emit, and the text
# kinds the bridge names ("answer", "thinking").
events=$( { grep -ohE '(session|bridge|worker_bridge)_(emit|event|notice)[a-z_]*\([^,]*, *"[a-z_]+"' \
    supervisor/*.c worker/*.c | sed -E 's/.*"([a-z_]+)"$/\1/'
    grep -ohE '\btype = "[a-z_]+";' worker/bridge.c |
    sed -E 's/.*"([a-z_]+)".*/\1/'; } | sort -u)
# Error codes: the ERR_ strings of common/proto.h.
errors=$(sed -nE 's/^#define ERR_[A-Z_]+[[:space:]]+"([a-z_]+)".*/\1/p' \
    common/proto.h | sort -u)
# Reply types other than events: server_client_reply(c, req, "type", ...).
replies=$(grep -ohE 'server_client_reply\([^,]+, *[^,]+, *"[a-z_]+"' \
    supervisor/*.c | sed -E 's/.*"([a-z_]+)"$/\1/' | sort -u)
# Who refuses a tool call: *by = "..." and "by", "..." in the worker.
bys=$( { grep -ohE '\*by = "[a-z_]+"' worker/*.c
    grep -ohE '"by", "[a-z_]+"' worker/*.c; } |
    sed -E 's/.*"([a-z_]+)"$/\1/' | sort -u)

check_names op "$ops" strict
check_names event "$events" strict
check_names "error code" "$errors" strict
check_names "reply type" "$replies"
check_names "permission_denied by" "$bys"
# Config keys: each has its .It Ic entry (alone or in a list) in the page.
keys=$("$B/genconf" | sed -n 's/^#\([a-z_0-9]*\) =.*/\1/p')
if [ -z "$keys" ]; then
	n=$((n + 1))
	echo "not ok $n - no config key from $B/genconf"
	failed=$((failed + 1))
fi
for k in $keys; do
	n=$((n + 1))
	if grep -Eq "^\.It .*Ic $k( |$)" man/hotplexd.conf.5; then
		echo "ok $n - config key $k is in hotplexd.conf(5)"
	else
		echo "not ok $n - config key $k is not in hotplexd.conf(5)"
		failed=$((failed + 1))
	fi
done

echo "1..$n"
[ "$failed" -eq 0 ]
