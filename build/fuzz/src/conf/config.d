build/fuzz/src/conf/config.o: src/conf/config.c src/conf/config.h \
  src/base/err.h src/base/util.h

src/conf/config.h:

src/base/err.h:

src/base/util.h:
