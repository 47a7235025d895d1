# tests/unit: the shared building blocks (common/config.c, line.c, msg.c,
# peer.c), the workdir check and the CLI spec (spawn.c) of the worker.
# Suite words hold a space, so they are quoted for the shell that runs
# tests/run-suites; $$B reaches it as $B.
COMMON_TEST_LIBS = $(LDLIBS_EV) $(LDLIBS_CJSON) $(LDLIBS_CMOCKA)

$(B)/test_config: $(B)/tests/unit/test_config.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

$(B)/test_line: $(B)/tests/unit/test_line.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

$(B)/test_msg: $(B)/tests/unit/test_msg.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

$(B)/test_peer: $(B)/tests/unit/test_peer.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

$(B)/test_json: $(B)/tests/unit/test_json.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

$(B)/test_request: $(B)/tests/unit/test_request.o $(B)/supervisor/request.o \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

$(B)/test_workdir: $(B)/tests/unit/test_workdir.o $(B)/worker/workdir.o \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

$(B)/test_spawn: $(B)/tests/unit/test_spawn.o $(B)/worker/spawn.o \
    $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

$(B)/test_ident: $(B)/tests/unit/test_ident.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS)

$(B)/test_sha256: $(B)/tests/unit/test_sha256.o $(B)/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_TEST_LIBS) -lcrypto

TEST_BINS	+= $(B)/test_sha256 $(B)/test_config $(B)/test_line $(B)/test_msg \
		   $(B)/test_peer \
		   $(B)/test_workdir $(B)/test_json $(B)/test_request $(B)/test_ident \
		   $(B)/test_spawn
SUITES		+= 'config=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_config' \
		   'line=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_line' \
		   'msg=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_msg' \
		   'peer=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_peer' \
		   'json=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_json' \
		   'request=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_request' \
		   'workdir=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_workdir' \
		   'spawn=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_spawn' \
		   'ident=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_ident' \
		   'sha256=CMOCKA_MESSAGE_OUTPUT=TAP $$B/test_sha256'
