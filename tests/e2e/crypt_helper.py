"""Make crypt(3) hashes with the system's libcrypt (as other systems would have
stored them), for the import test. Python's crypt module is deprecated."""
import ctypes
import ctypes.util
import os

_lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
_lib.crypt.restype = ctypes.c_char_p
_lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
_lib.crypt_gensalt.restype = ctypes.c_char_p
_lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]


def _hash(prefix, password):
    salt = _lib.crypt_gensalt(prefix.encode(), 0, None, 0)
    return _lib.crypt(password.encode(), salt).decode()


def sha512crypt(password):
    return _hash("$6$", password)


def bcrypt(password):
    return _hash("$2b$", password)
