# tests/unit: hotplex-protocol(7) names every op, event type, error code,
# reply type and permission_denied "by" the sources can emit, and
# hotplexd.conf(5) every key of the config table.
SUITES		+= 'protodoc=sh tests/unit/protodoc.sh'
