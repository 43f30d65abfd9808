build/fuzz/src/base/util.o: src/base/util.c src/base/util.h \
  src/base/err.h

src/base/util.h:

src/base/err.h:
