/* Reads that never wait for the disk (preadv2 with RWF_NOWAIT), each in one call:
 * its twin, the functions named `_python` in ferryman/pagecache.py, gives the
 * same answers with os.preadv, and tests/unit/test_pagecache.py holds the two
 * to it.
 *
 *     probe(fd, offset, count) -> 1: the first and the last byte of the region
 *         are in the page cache (a byte past the end counts: nothing to wait
 *         for); 0: reading one would wait for the disk; -errno: the read failed
 *         otherwise (a filesystem without RWF_NOWAIT says EOPNOTSUPP)
 *     read_into(fd, buffer, offset) -> the bytes read into the writable buffer
 *         (0 at end of file, fewer than its length where the rest is cold), or
 *         -errno (-EAGAIN: none of them is cached)
 *
 * Why compiled: a zero-copy answer probes every region it sends, and os.preadv
 * builds its vector from a list, takes buffer views and lets go of the GIL
 * around a read that cannot wait: two probes were about 4,000 of the 72,000
 * instructions a 64 KiB range runs in user space. With RWF_NOWAIT a read copies
 * from memory or fails at once, so the GIL is kept, except around a copy of 64
 * KiB or more (other threads run meanwhile).
 */

#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <sys/uio.h>

#define LONG_COPY (64 * 1024)

/* One read of `length` bytes at `offset` into `into`: bytes read, or -errno. */
static Py_ssize_t read_nowait(int fd, void *into, size_t length, off_t offset) {
    struct iovec vector = {into, length};
    ssize_t got = preadv2(fd, &vector, 1, offset, RWF_NOWAIT);
    return got >= 0 ? (Py_ssize_t)got : -(Py_ssize_t)errno;
}

/* fd and offset from Python ints: 0, or -1 with the exception set. */
static int fd_and_offset(PyObject *fd_arg, PyObject *offset_arg, int *fd, off_t *offset) {
    long value = PyLong_AsLong(fd_arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0 || value > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "fd must be a descriptor");
        return -1;
    }
    *fd = (int)value;
    long long at = PyLong_AsLongLong(offset_arg);
    if (at == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (at < 0) {
        PyErr_SetString(PyExc_ValueError, "offset must not be negative");
        return -1;
    }
    *offset = (off_t)at;
    return 0;
}

/* 1 when the byte at `offset` is cached or past the end, 0 when it is cold, or -errno. */
static Py_ssize_t byte_cached(int fd, off_t offset) {
    char byte;
    Py_ssize_t got = read_nowait(fd, &byte, 1, offset);
    if (got >= 0) {
        return 1;
    }
    return got == -EAGAIN ? 0 : got;
}

static PyObject *probe(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    int fd;
    off_t offset;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "probe(fd, offset, count)");
        return NULL;
    }
    if (fd_and_offset(args[0], args[1], &fd, &offset) != 0) {
        return NULL;
    }
    long long count = PyLong_AsLongLong(args[2]);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t answer = byte_cached(fd, offset);
    if (answer == 1 && count > 1) {
        answer = byte_cached(fd, offset + (off_t)(count - 1));
    }
    return PyLong_FromSsize_t(answer);
}

static PyObject *read_into(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    int fd;
    off_t offset;
    Py_buffer view;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "read_into(fd, buffer, offset)");
        return NULL;
    }
    if (fd_and_offset(args[0], args[2], &fd, &offset) != 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) {
        return NULL;
    }
    Py_ssize_t got;
    if (view.len >= LONG_COPY) {
        Py_BEGIN_ALLOW_THREADS
        got = read_nowait(fd, view.buf, (size_t)view.len, offset);
        Py_END_ALLOW_THREADS
    } else {
        got = read_nowait(fd, view.buf, (size_t)view.len, offset);
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(got);
}

static PyMethodDef methods[] = {
    {"probe", (PyCFunction)(void (*)(void))probe, METH_FASTCALL,
     "probe(fd, offset, count) -> 1 if the region's first and last byte are cached (or past "
     "the end), 0 if reading one would wait for the disk, else -errno."},
    {"read_into", (PyCFunction)(void (*)(void))read_into, METH_FASTCALL,
     "read_into(fd, buffer, offset) -> the cached bytes read into buffer, or -errno "
     "(-EAGAIN: none is cached)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ferryman._pagecache",
    .m_doc = "Reads that never wait for the disk, in compiled code.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__pagecache(void) { return PyModule_Create(&module); }
