/* status.h - status codes shared by every collabc kernel that can fail.
 * Kernels return int: CF_OK (0) on success, one of these on failure. The binding turns
 * them into Python exceptions; the C tests assert on them. Nothing here allocates. */
#ifndef CF_STATUS_H
#define CF_STATUS_H

enum {
    CF_OK = 0,
    CF_ERR_INDEX = 1,     /* an id was negative or >= its table's row count */
    CF_ERR_NONFINITE = 2, /* a loss became NaN or inf; training stopped before the step */
    CF_ERR_NOMEM = 3,     /* a driver could not allocate its scratch space */
    CF_ERR_ARG = 4        /* an inconsistent size or option */
};

#endif
