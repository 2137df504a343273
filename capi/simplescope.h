/* simplescope C API.
 *
 * Opaque handles with create/free pairs; every call returns a status code and, on failure, an
 * error message in *err that the caller frees with ss_free. Requests and results are msgpack
 * maps; large arrays travel as {"dtype": str, "shape": [int], "data": bin} (little-endian).
 * Buffers returned through out-pointers are freed with ss_free.
 *
 * The methods of ss_call / ss_run_start, with every request and response field, and what each
 * status means: docs/capi.md. Calls on one model from several threads are safe.
 */
#ifndef SIMPLESCOPE_H
#define SIMPLESCOPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: every function below that returns int returns one of these (the functions keep
 * int, the type the Go library exports; compare the result with these names). */
typedef enum ss_status {
    SS_OK = 0,
    SS_ERR_INPUT = 1,     /* bad input: the caller's mistake */
    SS_ERR_RUNTIME = 2,   /* a failure while running */
    SS_ERR_OOM = 3,       /* out of memory */
    SS_ERR_CANCELLED = 4, /* cancelled with ss_run_cancel */
    SS_ERR_PANIC = 5,     /* an internal error (a recovered Go panic) */
    SS_ERR_NOT_FOUND = 6  /* a missing file or folder */
} ss_status;

typedef struct ss_model ss_model;
typedef struct ss_run ss_run;

/* Frees a buffer or message returned by this library (NULL is ignored). */
void ss_free(void *p);

/* Library facts as msgpack: version, torch version, CUDA devices. */
int ss_backend_info(uint8_t **out, size_t *out_len, char **err);
/* Number of tensors alive in the process (for leak checks). */
int64_t ss_live_tensors(void);

/* Loads a GPT-J model folder. device: "cpu", "cuda", "cuda:N", or a comma-separated list of
 * devices ("cuda:0,cuda:1"; one model replica each, evaluate, patch and generate split their work
 * over them); dtype: "float32", "float16", "bfloat16". */
int ss_model_load(const char *path, const char *device, const char *dtype, ss_model **out,
                  char **err);
void ss_model_free(ss_model *m);

/* Runs a method synchronously. */
int ss_call(ss_model *m, const char *method, const uint8_t *req, size_t req_len, uint8_t **out,
            size_t *out_len, char **err);

/* Runs a method in the background: poll its progress, cancel it, wait for its result. */
int ss_run_start(ss_model *m, const char *method, const uint8_t *req, size_t req_len,
                 ss_run **out, char **err);
/* done/total items so far; *finished is 1 once the result is ready. */
int ss_run_poll(ss_run *r, int64_t *done, int64_t *total, int *finished);
/* Asks the run to stop; it ends at the next batch boundary with SS_ERR_CANCELLED. */
void ss_run_cancel(ss_run *r);
/* Blocks until the run ends and returns its result (once). */
int ss_run_wait(ss_run *r, uint8_t **out, size_t *out_len, char **err);
/* Frees a run (cancelling and waiting for it if it is still going). */
void ss_run_free(ss_run *r);

#ifdef __cplusplus
}
#endif
#endif
