build/tests/fuzz/fuzz_config.o: tests/fuzz/fuzz_config.c \
 src/conf/config.h src/base/err.h
src/conf/config.h:
src/base/err.h:
