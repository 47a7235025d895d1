# tests/: every suite directory contributes its own fragment.
include $(sort $(wildcard tests/*/*.mk))
