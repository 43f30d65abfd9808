build/tests/unit/test_config.o: tests/unit/test_config.c \
 src/conf/config.h src/base/err.h
src/conf/config.h:
src/base/err.h:
