/* Finding the parts of a request head in the parser's buffer, each in one call:
 * its twin, ferryman/http/headscan.py, gives the same answers with bytearray
 * methods, and tests/unit/test_headscan.py holds the two to it.
 *
 *     find_blank_line(buf, start) -> index of the first "\r\n\r\n" at or after start, or -1
 *     request_line(buf, limit) -> (line_end, version_at)
 *         line_end: index of the first "\r\n" wholly inside buf[:limit], or -1;
 *         version_at: where the line's last word starts when that word begins
 *         with "HTTP/", else -1 (0 when line_end is -1)
 *     count_crlf(buf, start, end) -> the "\r\n" pairs wholly inside buf[start:end]
 *
 * Why compiled: every request runs these, and each bytearray method called
 * from compiled Python parses its arguments with PyArg_ParseTuple and takes
 * a buffer view: five such calls were about a seventh of the instructions a
 * 1 KiB answer runs in user space. Indices are non-negative and clamped to
 * the buffer, as slicing clamps them.
 */

#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <string.h>

/* The bytearray's bytes and size; 0, or -1 with TypeError when it is not one. */
static int bytes_of(PyObject *buf, const char **data, Py_ssize_t *size) {
    if (!PyByteArray_Check(buf)) {
        PyErr_SetString(PyExc_TypeError, "buf must be a bytearray");
        return -1;
    }
    *data = PyByteArray_AS_STRING(buf);
    *size = PyByteArray_GET_SIZE(buf);
    return 0;
}

/* A non-negative index, clamped to `size`; -1 with an exception when it is not one. */
static Py_ssize_t index_of(PyObject *arg, Py_ssize_t size) {
    Py_ssize_t value = PyLong_AsSsize_t(arg);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (value < 0) {
        PyErr_SetString(PyExc_ValueError, "index must not be negative");
        return -1;
    }
    return value < size ? value : size;
}

/* The arguments (buf, index) of a two-argument call: 0, or -1 with the exception set. */
static int buffer_and_index(PyObject *const *args, Py_ssize_t nargs, const char *usage,
                            const char **data, Py_ssize_t *size, Py_ssize_t *index) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if (bytes_of(args[0], data, size) != 0 || (*index = index_of(args[1], *size)) < 0) {
        return -1;
    }
    return 0;
}

static Py_ssize_t find(const char *data, Py_ssize_t from, Py_ssize_t to, const char *what,
                       size_t length) {
    if (to - from < (Py_ssize_t)length) {
        return -1;
    }
    const char *hit = memmem(data + from, (size_t)(to - from), what, length);
    return hit == NULL ? -1 : hit - data;
}

static PyObject *find_blank_line(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    const char *data;
    Py_ssize_t size, start;
    if (buffer_and_index(args, nargs, "find_blank_line(buf, start)", &data, &size, &start)) {
        return NULL;
    }
    return PyLong_FromSsize_t(find(data, start, size, "\r\n\r\n", 4));
}

static PyObject *pair(Py_ssize_t a, Py_ssize_t b) {
    PyObject *first = PyLong_FromSsize_t(a), *second = PyLong_FromSsize_t(b);
    PyObject *tuple = (first && second) ? PyTuple_New(2) : NULL;
    if (tuple == NULL) {
        Py_XDECREF(first);
        Py_XDECREF(second);
        return NULL;
    }
    PyTuple_SET_ITEM(tuple, 0, first);
    PyTuple_SET_ITEM(tuple, 1, second);
    return tuple;
}

static PyObject *request_line(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    const char *data;
    Py_ssize_t size, limit;
    if (buffer_and_index(args, nargs, "request_line(buf, limit)", &data, &size, &limit)) {
        return NULL;
    }
    Py_ssize_t line_end = find(data, 0, limit, "\r\n", 2);
    if (line_end < 0) {
        return pair(-1, 0);
    }
    Py_ssize_t word = line_end;
    while (word > 0 && data[word - 1] != ' ') {
        word--;
    }
    int http = line_end - word >= 5 && memcmp(data + word, "HTTP/", 5) == 0;
    return pair(line_end, http ? word : -1);
}

static PyObject *count_crlf(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    const char *data;
    Py_ssize_t size, start, end, count = 0;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "count_crlf(buf, start, end)");
        return NULL;
    }
    if (bytes_of(args[0], &data, &size) != 0 || (start = index_of(args[1], size)) < 0 ||
        (end = index_of(args[2], size)) < 0) {
        return NULL;
    }
    for (Py_ssize_t at = start; at + 1 < end; at++) {
        const char *cr = memchr(data + at, '\r', (size_t)(end - 1 - at));
        if (cr == NULL) {
            break;
        }
        at = cr - data;
        if (data[at + 1] == '\n') {
            count++;
            at++;
        }
    }
    return PyLong_FromSsize_t(count);
}

static PyMethodDef methods[] = {
    {"find_blank_line", (PyCFunction)(void (*)(void))find_blank_line, METH_FASTCALL,
     "find_blank_line(buf, start) -> index of the first CRLF CRLF at or after start, or -1."},
    {"request_line", (PyCFunction)(void (*)(void))request_line, METH_FASTCALL,
     "request_line(buf, limit) -> (line_end, version_at): the first CRLF inside buf[:limit] "
     "(or -1, 0), and where the line's last word starts if it begins with HTTP/ (else -1)."},
    {"count_crlf", (PyCFunction)(void (*)(void))count_crlf, METH_FASTCALL,
     "count_crlf(buf, start, end) -> the CRLF pairs wholly inside buf[start:end]."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ferryman.http._headscan",
    .m_doc = "Finding the parts of a request head, in compiled code.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__headscan(void) { return PyModule_Create(&module); }
