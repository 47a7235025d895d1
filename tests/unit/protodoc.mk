# tests/unit: hotplex-protocol(7) names every op, event type, error code,
# reply type and permission_denied "by" the sources can emit.
SUITES		+= 'protodoc=sh tests/unit/protodoc.sh'
