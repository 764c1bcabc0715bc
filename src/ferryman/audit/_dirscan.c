/* One directory of an audited tree, read in compiled code: the audit's walk
 * (ferryman/audit/localtree.py) calls scan() once per directory, and its
 * pure-Python twin there (_scan_python) gives the same answer for the same
 * directory; tests/unit/test_dirscan.py holds the two to it.
 *
 *     scan(directory_fd) -> [(sort_name, size, ident), ...]
 *
 * Every entry whose name does not start with "." and that is a regular file
 * or a directory, never following a symlink (a symlink is neither). A
 * directory comes as ("name/", None, None); a file as ("name", st_size,
 * "inode:mtime_ns:ctime_ns"). Sorted by sort_name, descending (the walk pops
 * from the end). An entry removed while it is read is left out (it is gone);
 * any other error raises OSError. Names are decoded as os.fsdecode does.
 *
 * Why compiled: the walk costs one stat per file of every audit, and in
 * Python the objects around each stat cost more than the system call. The
 * system calls run without the GIL, so the stores' threads overlap.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    size_t name_at; /* offset of the NUL-terminated name in the names buffer */
    size_t name_len;
    int is_dir;
    unsigned long long ino;
    long long size, mtime_ns, ctime_ns;
} Entry;

typedef struct {
    Entry *entries;
    size_t count, capacity;
    char *names;
    size_t names_used, names_capacity;
    int error; /* errno of the failure, 0 if none */
} Scan;

static int grow(void **buffer, size_t *capacity, size_t needed, size_t unit) {
    if (needed <= *capacity) {
        return 0;
    }
    size_t wanted = *capacity ? *capacity * 2 : 64;
    while (wanted < needed) {
        wanted *= 2;
    }
    void *bigger = realloc(*buffer, wanted * unit);
    if (bigger == NULL) {
        return -1;
    }
    *buffer = bigger;
    *capacity = wanted;
    return 0;
}

static long long nanoseconds(struct timespec at) {
    return (long long)at.tv_sec * 1000000000LL + (long long)at.tv_nsec;
}

/* Add one entry; 1 if added, 0 if left out (gone, or neither file nor directory). */
static int add_entry(Scan *scan, int fd, const char *name, unsigned char type) {
    struct stat st;
    int is_dir;
    if (type == DT_DIR) {
        is_dir = 1;
    } else if (type == DT_REG || type == DT_UNKNOWN) {
        if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) {
                return 0;
            }
            scan->error = errno;
            return -1;
        }
        if (type == DT_UNKNOWN && S_ISDIR(st.st_mode)) {
            is_dir = 1;
        } else if (type == DT_UNKNOWN && !S_ISREG(st.st_mode)) {
            return 0;
        } else {
            is_dir = 0;
        }
    } else {
        return 0; /* a symlink, fifo, socket or device */
    }
    size_t len = strlen(name);
    if (grow((void **)&scan->entries, &scan->capacity, scan->count + 1, sizeof(Entry)) != 0 ||
        grow((void **)&scan->names, &scan->names_capacity, scan->names_used + len + 2, 1) != 0) {
        scan->error = ENOMEM;
        return -1;
    }
    Entry *entry = &scan->entries[scan->count++];
    entry->name_at = scan->names_used;
    entry->name_len = len;
    entry->is_dir = is_dir;
    memcpy(scan->names + scan->names_used, name, len);
    if (is_dir) {
        scan->names[scan->names_used + len] = '/'; /* sorts a directory as its keys do */
        entry->name_len++;
    } else {
        entry->ino = (unsigned long long)st.st_ino;
        entry->size = (long long)st.st_size;
        entry->mtime_ns = nanoseconds(st.st_mtim);
        entry->ctime_ns = nanoseconds(st.st_ctim);
    }
    scan->names[scan->names_used + entry->name_len] = '\0';
    scan->names_used += entry->name_len + 1;
    return 1;
}

/* Read the directory at `fd` into `scan`, without the GIL. */
static void read_directory(int fd, Scan *scan) {
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0); /* closedir closes it; the caller keeps fd */
    if (own < 0) {
        scan->error = errno;
        return;
    }
    DIR *dir = fdopendir(own);
    if (dir == NULL) {
        scan->error = errno;
        close(own);
        return;
    }
    rewinddir(dir); /* the descriptor's offset is shared with fd: read from the start */
    for (;;) {
        errno = 0;
        struct dirent *found = readdir(dir);
        if (found == NULL) {
            if (errno != 0) {
                scan->error = errno;
            }
            break;
        }
        if (found->d_name[0] == '.') {
            continue; /* dot-names: never served, never written (state, temporaries) */
        }
        if (add_entry(scan, fd, found->d_name, found->d_type) < 0) {
            break;
        }
    }
    rewinddir(dir); /* leave the shared offset at the start, as os.scandir does */
    closedir(dir);
}

static PyObject *entry_tuple(const Scan *scan, const Entry *entry) {
    PyObject *name = PyUnicode_DecodeFSDefaultAndSize(scan->names + entry->name_at,
                                                      (Py_ssize_t)entry->name_len);
    if (name == NULL) {
        return NULL;
    }
    if (entry->is_dir) {
        return Py_BuildValue("(NOO)", name, Py_None, Py_None);
    }
    /* snprintf, not PyUnicode_FromFormat: it is a third of the cost of an entry */
    char text[64];
    int length = snprintf(text, sizeof text, "%llu:%lld:%lld", entry->ino, entry->mtime_ns,
                          entry->ctime_ns);
    PyObject *ident = PyUnicode_FromStringAndSize(text, length);
    if (ident == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    return Py_BuildValue("(NLN)", name, entry->size, ident);
}

static PyObject *scan(PyObject *module, PyObject *arg) {
    (void)module;
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "scan() needs an open directory descriptor");
        return NULL;
    }
    Scan found = {0};
    Py_BEGIN_ALLOW_THREADS
    read_directory((int)fd, &found);
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (found.error != 0) {
        errno = found.error;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = PyList_New((Py_ssize_t)found.count);
    if (result == NULL) {
        goto done;
    }
    for (size_t i = 0; i < found.count; i++) {
        PyObject *item = entry_tuple(&found, &found.entries[i]);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, item);
    }
    /* Names are unique in a directory, so the tuples order by their first item. */
    if (PyList_Sort(result) != 0 || PyList_Reverse(result) != 0) {
        Py_CLEAR(result);
    }
done:
    free(found.entries);
    free(found.names);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O,
     "scan(directory_fd) -> [(sort_name, size, ident), ...]: the directory's visible files "
     "and directories (\"name/\", None, None), sorted descending."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ferryman.audit._dirscan",
    .m_doc = "One directory of an audited tree, read in compiled code.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__dirscan(void) { return PyModule_Create(&module); }
