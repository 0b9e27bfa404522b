/*
 * fuzz_ml.h — helpers shared by the model-file and data-file fuzz targets
 * (fuzz_textmodel.c, fuzz_tabmodel.c, fuzz_dataset.c, fuzz_table.c).
 *
 * The data readers take a path, so an input is put in an anonymous memory
 * file (memfd_create) and read back through /proc/self/fd/N: nothing touches
 * the disk, and the name has no extension, so the readers choose CSV or JSON
 * lines from the first byte as they do for such names.
 *
 * The model loaders check a checksum over the whole file before anything
 * else; random bytes never pass it. So the model targets treat an input as a
 * file without its last 8 bytes and append the right checksum: the fuzzer
 * then explores what a deliberately altered file (checksum recomputed)
 * could hold. The seeds are real model files with their checksums removed.
 */
#ifndef CV_FUZZ_ML_H
#define CV_FUZZ_ML_H

#include "ml/ml.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Writes data to a new memory file; *fd (close it) and path[32] name it.
 * Returns 0, or -1 when the system refuses. */
static int fuzz_memfile(const uint8_t *data, size_t size, int *fd, char path[32])
{
    *fd = memfd_create("fuzz", 0);
    if (*fd < 0)
        return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(*fd, data + off, size - off);
        if (w <= 0) {
            close(*fd);
            return -1;
        }
        off += (size_t)w;
    }
    snprintf(path, 32, "/proc/self/fd/%d", *fd);
    return 0;
}

/* data followed by cv_ml_hash64(data, seed) little-endian: a malloc'ed
 * buffer of size + 8 bytes. */
static unsigned char *fuzz_with_checksum(const uint8_t *data, size_t size, uint64_t seed)
{
    unsigned char *b = malloc(size + 8);
    if (!b)
        abort();
    if (size)
        memcpy(b, data, size);
    uint64_t sum = cv_ml_hash64(b, size, seed);
    for (int i = 0; i < 8; i++)
        b[size + (size_t)i] = (unsigned char)(sum >> (8 * i));
    return b;
}

#endif
