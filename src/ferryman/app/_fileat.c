/* Opening and stat-ing a path under the root, the two system calls every request
 * for a local file makes, without the Python objects around them: its twin,
 * ferryman/app/fileat.py, gives the same answers, and tests/unit/test_fileat.py
 * holds the two to it.
 *
 *     open_at(dir_fd, path, flags) -> descriptor, or -errno
 *     identity_at(dir_fd, path) -> (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns),
 *                                  or the errno (an int) when stat() fails
 *
 * Why compiled: a missing file is the 404 path, and os.open raising
 * FileNotFoundError built an exception (its message from strerror, a traceback
 * through the compiled caller) that cost more than the open itself. A kept
 * descriptor is checked by a stat() of its path on every use, and os.stat made
 * a stat_result of 20 fields (three of them floats) for the five compared.
 * Paths are encoded as os.fsencode does; one holding NUL raises ValueError, as
 * os.open and os.stat do. The GIL is released around each call, as os does.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

/* The path as bytes for the system call; NULL with ValueError for an embedded NUL. */
static PyObject *encoded(PyObject *path) {
    PyObject *bytes = PyUnicode_EncodeFSDefault(path);
    if (bytes == NULL) {
        return NULL;
    }
    if ((size_t)PyBytes_GET_SIZE(bytes) != strlen(PyBytes_AS_STRING(bytes))) {
        Py_DECREF(bytes);
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        return NULL;
    }
    return bytes;
}

static int parse_fd(PyObject *arg, int *fd) {
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < INT_MIN || value > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "descriptor out of range");
        return -1;
    }
    *fd = (int)value;
    return 0;
}

/* The descriptor and the encoded path of a call (dir_fd, path, ...) of `want` arguments;
 * NULL with the exception set when they are not that. */
static PyObject *dir_and_path(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
                              const char *usage, int *dir_fd) {
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    if (!PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "path must be str");
        return NULL;
    }
    if (parse_fd(args[0], dir_fd) != 0) {
        return NULL;
    }
    return encoded(args[1]);
}

static PyObject *open_at(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    int dir_fd, flags, fd, error;
    PyObject *path = dir_and_path(args, nargs, 3, "open_at(dir_fd, path, flags)", &dir_fd);
    if (path == NULL) {
        return NULL;
    }
    if (parse_fd(args[2], &flags) != 0) {
        Py_DECREF(path);
        return NULL;
    }
    const char *name = PyBytes_AS_STRING(path);
    do {
        Py_BEGIN_ALLOW_THREADS
        fd = openat(dir_fd, name, flags | O_CLOEXEC, 0777);
        error = errno;
        Py_END_ALLOW_THREADS
    } while (fd < 0 && error == EINTR && PyErr_CheckSignals() == 0);
    Py_DECREF(path);
    if (fd < 0 && PyErr_Occurred()) {
        return NULL; /* a signal handler raised */
    }
    return PyLong_FromLong(fd >= 0 ? fd : -error);
}

static PyObject *identity_at(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    int dir_fd, status, error;
    struct stat st;
    PyObject *path = dir_and_path(args, nargs, 2, "identity_at(dir_fd, path)", &dir_fd);
    if (path == NULL) {
        return NULL;
    }
    const char *name = PyBytes_AS_STRING(path);
    do {
        Py_BEGIN_ALLOW_THREADS
        status = fstatat(dir_fd, name, &st, 0);
        error = errno;
        Py_END_ALLOW_THREADS
    } while (status != 0 && error == EINTR && PyErr_CheckSignals() == 0);
    Py_DECREF(path);
    if (status != 0) {
        return PyErr_Occurred() ? NULL : PyLong_FromLong(error);
    }
    /* Built item by item: Py_BuildValue parses its format string on every call. */
    PyObject *items[5] = {
        PyLong_FromUnsignedLongLong((unsigned long long)st.st_dev),
        PyLong_FromUnsignedLongLong((unsigned long long)st.st_ino),
        PyLong_FromLongLong((long long)st.st_size),
        PyLong_FromLongLong((long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec),
        PyLong_FromLongLong((long long)st.st_ctim.tv_sec * 1000000000LL + st.st_ctim.tv_nsec),
    };
    PyObject *identity = PyTuple_New(5);
    for (int i = 0; i < 5; i++) {
        if (items[i] == NULL || identity == NULL) {
            for (int j = i; j < 5; j++) {
                Py_XDECREF(items[j]);
            }
            Py_XDECREF(identity);
            return NULL;
        }
        PyTuple_SET_ITEM(identity, i, items[i]);
    }
    return identity;
}

static PyMethodDef methods[] = {
    {"open_at", (PyCFunction)(void (*)(void))open_at, METH_FASTCALL,
     "open_at(dir_fd, path, flags) -> descriptor (O_CLOEXEC added), or -errno."},
    {"identity_at", (PyCFunction)(void (*)(void))identity_at, METH_FASTCALL,
     "identity_at(dir_fd, path) -> (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) "
     "following symlinks, or the errno when stat() fails."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ferryman.app._fileat",
    .m_doc = "Opening and stat-ing a path under the root, in compiled code.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fileat(void) { return PyModule_Create(&module); }
