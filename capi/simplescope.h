/* simplescope C API.
 *
 * Opaque handles with create/free pairs; every call returns a status code and, on failure, an
 * error message in *err that the caller frees with ss_free. Requests and results are msgpack
 * maps; large arrays travel as {"dtype": str, "shape": [int], "data": bin} (little-endian).
 * Buffers returned through out-pointers are freed with ss_free.
 *
 * The methods of ss_call / ss_run_start, with every request and response field, and what each
 * status means: docs/capi.md. Tensor results travel as handles (ss_tensor_export, below; the
 * convention: docs/tensors.md). Calls on one model from several threads are safe.
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
/* Number of tensors alive in the process (for leak checks), exported ones the caller still
 * holds included. */
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


/* Tensors without copies (docs/tensors.md). Results carry tensors as handles, msgpack maps
 * {"tensor": id, "dtype": str, "shape": [int]} (run_with_cache's logits and cache); a method's
 * tensor arguments accept {"tensor": id} as well as {"dtype", "shape", "data": bin}. Ids are
 * process-wide (not tied to a model) and never 0. The tensors are DLPack DLManagedTensors
 * (dlpack.h, the unversioned struct), shared with the library's ATen tensors, never copied.
 *
 * Who frees what:
 *  - a handle in a result belongs to the caller: export it (once) or release it;
 *  - ss_tensor_export takes the tensor out of the registry (the id is consumed, on failure too)
 *    and returns a DLManagedTensor the caller owns: call its deleter once when done (a DLPack
 *    consumer such as torch.from_dlpack does). It stays valid after ss_model_free;
 *  - ss_tensor_import: on success the library owns t (its deleter runs once the handle is released
 *    and no computation uses it any more) and *id names it; the caller must not call t's deleter
 *    and must keep the memory unchanged until then. On failure t is untouched and still the
 *    caller's. CPU and CUDA memory; float32/16/64, bfloat16, int64/32/16/8, uint8 and bool;
 *  - a handle passed in a request is borrowed, not consumed: release it after the call;
 *  - ss_tensor_release frees a handle still held (an unknown id is ignored).
 * Exported tensors not yet deleted count in ss_live_tensors. */
struct DLManagedTensor;
int ss_tensor_export(uint64_t id, struct DLManagedTensor **out, char **err);
int ss_tensor_import(struct DLManagedTensor *t, uint64_t *id, char **err);
void ss_tensor_release(uint64_t id);

/* A model whose weights are tensors imported with ss_tensor_import (what ss.from_hf uses).
 * req: msgpack {"config": bin (config.json's bytes), "tensors": {checkpoint key: {"tensor": id}},
 * "dtype": str, "device": str, "tokenizer": folder with tokenizer.json or "", "name": str}.
 * A tensor that already has that dtype and device and is contiguous becomes a weight without a
 * copy (the model keeps its own reference: the caller releases its handles after the call, and
 * must not modify that memory while the model is in use); others are converted once. Free the
 * model with ss_model_free. */
int ss_model_from_tensors(const uint8_t *req, size_t req_len, ss_model **out, char **err);

#ifdef __cplusplus
}
#endif
#endif
