build/tests/fuzz/fuzz_main.o: tests/fuzz/fuzz_main.c
