#define _POSIX_C_SOURCE 200809L
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// Opens path read-only and checks it is a regular file; returns the fd or -1.
static int open_regular(const char *path, struct stat *st, ty_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ty_err_set(err, TY_E_IO, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        ty_err_set(err, TY_E_IO, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    return fd;
}

ty_status file_read_all(const char *path, size_t max_bytes, uint8_t **out, size_t *len, ty_err *err) {
    *out = NULL;
    *len = 0;
    struct stat st;
    int fd = open_regular(path, &st, err);
    if (fd < 0) return TY_E_IO;
    size_t size = (size_t)st.st_size;
    if (size > max_bytes) {
        close(fd);
        return ty_err_set(err, TY_E_LIMIT, "%s: %zu bytes exceeds the limit of %zu", path, size, max_bytes);
    }
    uint8_t *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return ty_err_set(err, TY_E_NOMEM, "%s: cannot allocate %zu bytes", path, size + 1);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            free(buf);
            close(fd);
            return ty_err_set(err, TY_E_IO, "%s: short read", path);
        }
        got += (size_t)n;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    *len = size;
    return TY_OK;
}

ty_status file_map_init(file_map *m, const char *path, ty_err *err) {
    m->data = NULL;
    m->size = 0;
    struct stat st;
    int fd = open_regular(path, &st, err);
    if (fd < 0) return TY_E_IO;
    if (st.st_size == 0) {
        close(fd);
        return TY_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return ty_err_set(err, TY_E_IO, "%s: mmap failed: %s", path, strerror(errno));
    m->data = p;
    m->size = (size_t)st.st_size;
    return TY_OK;
}

void file_map_free(file_map *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}
