/* simplescope libtorch shim: a plain C ABI over ATen.
 *
 * Rules (docs/design.md §3):
 *  - every function returns its error: NULL on success, otherwise a malloc'd, NUL-terminated
 *    message the caller frees with sst_free_error (never a thread-local "last error");
 *  - results are written through out-pointers;
 *  - no C++ exception crosses this boundary;
 *  - tensors are opaque handles owned by the caller and freed with sst_free.
 * Error messages of out-of-memory failures start with "[oom] ".
 */
#ifndef SIMPLESCOPE_SHIM_H
#define SIMPLESCOPE_SHIM_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define SST_API __attribute__((visibility("default")))
#else
#define SST_API
#endif

typedef struct sst_tensor sst_tensor;
typedef char *sst_error;

/* dtype codes */
enum {
  SST_F32 = 0, SST_F16 = 1, SST_BF16 = 2, SST_I64 = 3, SST_F64 = 4,
  SST_I32 = 5, SST_U8 = 6, SST_BOOL = 7, SST_I8 = 8, SST_I16 = 9
};
/* device types */
enum { SST_CPU = 0, SST_CUDA = 1 };

#define SST_MAX_DIMS 8

SST_API void sst_free_error(sst_error e);
/* Frees a tensor handle (NULL is ignored). */
SST_API void sst_free(sst_tensor *t);
/* Number of tensor handles alive in this process, plus DLPack exports not yet deleted. */
SST_API int64_t sst_live_tensors(void);

/* Library facts. *out is malloc'd; free with sst_free_error. */
SST_API sst_error sst_torch_version(char **out);
SST_API sst_error sst_cuda_device_count(int64_t *out);
SST_API sst_error sst_cuda_mem_info(int64_t device, int64_t *free_bytes, int64_t *total_bytes);
SST_API sst_error sst_set_num_threads(int64_t n);
SST_API sst_error sst_get_num_threads(int64_t *out);
/* TF32 on CUDA: at::globalContext()'s allowTF32CuBLAS / allowTF32CuDNN (process-wide; the flags
 * torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32 read). */
SST_API sst_error sst_get_tf32(int *cublas, int *cudnn);
SST_API sst_error sst_set_tf32(int cublas, int cudnn);

/* Creation. from_blob copies `data` (host memory, contiguous, of dtype src_dtype and the given
 * shape) into a new tensor of dtype dst_dtype on the device. */
SST_API sst_error sst_from_blob(const void *data, const int64_t *shape, int64_t ndim, int src_dtype,
                        int dst_dtype, int dev_type, int64_t dev_index, sst_tensor **out);
SST_API sst_error sst_zeros(const int64_t *shape, int64_t ndim, int dtype, int dev_type,
                    int64_t dev_index, sst_tensor **out);
SST_API sst_error sst_full(const int64_t *shape, int64_t ndim, double value, int dtype, int dev_type,
                   int64_t dev_index, sst_tensor **out);
SST_API sst_error sst_arange(int64_t start, int64_t end, int dtype, int dev_type, int64_t dev_index,
                     sst_tensor **out);

/* Introspection and host copies. shape must hold SST_MAX_DIMS values. */
SST_API sst_error sst_info(const sst_tensor *t, int *dtype, int64_t *ndim, int64_t *shape,
                   int *dev_type, int64_t *dev_index);
/* Copies the tensor (any device, any layout) into dst as contiguous bytes of its own dtype.
 * nbytes must equal numel * element size. */
SST_API sst_error sst_copy_to_host(const sst_tensor *t, void *dst, int64_t nbytes);
SST_API sst_error sst_to(const sst_tensor *t, int dtype, int dev_type, int64_t dev_index,
                 sst_tensor **out);
SST_API sst_error sst_clone(const sst_tensor *t, sst_tensor **out);

/* Shape ops. */
SST_API sst_error sst_reshape(const sst_tensor *t, const int64_t *shape, int64_t ndim, sst_tensor **out);
SST_API sst_error sst_permute(const sst_tensor *t, const int64_t *dims, int64_t ndim, sst_tensor **out);
SST_API sst_error sst_transpose(const sst_tensor *t, int64_t d0, int64_t d1, sst_tensor **out);
SST_API sst_error sst_contiguous(const sst_tensor *t, sst_tensor **out);
SST_API sst_error sst_narrow(const sst_tensor *t, int64_t dim, int64_t start, int64_t length,
                     sst_tensor **out);
SST_API sst_error sst_select(const sst_tensor *t, int64_t dim, int64_t index, sst_tensor **out);
SST_API sst_error sst_unsqueeze(const sst_tensor *t, int64_t dim, sst_tensor **out);
SST_API sst_error sst_expand(const sst_tensor *t, const int64_t *shape, int64_t ndim, sst_tensor **out);
SST_API sst_error sst_cat(sst_tensor *const *ts, int64_t n, int64_t dim, sst_tensor **out);
SST_API sst_error sst_stack(sst_tensor *const *ts, int64_t n, int64_t dim, sst_tensor **out);
SST_API sst_error sst_index_select(const sst_tensor *t, int64_t dim, const sst_tensor *index,
                           sst_tensor **out);
/* out = t with out[index[i]] along dim replaced by src[i] (a copy; t is unchanged). */
SST_API sst_error sst_index_copy(const sst_tensor *t, int64_t dim, const sst_tensor *index,
                         const sst_tensor *src, sst_tensor **out);
SST_API sst_error sst_gather(const sst_tensor *t, int64_t dim, const sst_tensor *index, sst_tensor **out);

/* Elementwise and reductions. */
SST_API sst_error sst_add(const sst_tensor *a, const sst_tensor *b, sst_tensor **out);
SST_API sst_error sst_sub(const sst_tensor *a, const sst_tensor *b, sst_tensor **out);
SST_API sst_error sst_mul(const sst_tensor *a, const sst_tensor *b, sst_tensor **out);
SST_API sst_error sst_div(const sst_tensor *a, const sst_tensor *b, sst_tensor **out);
SST_API sst_error sst_add_scalar(const sst_tensor *a, double s, sst_tensor **out);
SST_API sst_error sst_mul_scalar(const sst_tensor *a, double s, sst_tensor **out);
SST_API sst_error sst_neg(const sst_tensor *a, sst_tensor **out);
SST_API sst_error sst_sin(const sst_tensor *a, sst_tensor **out);
SST_API sst_error sst_cos(const sst_tensor *a, sst_tensor **out);
SST_API sst_error sst_eq(const sst_tensor *a, const sst_tensor *b, sst_tensor **out);
SST_API sst_error sst_masked_fill(const sst_tensor *t, const sst_tensor *mask, double value,
                          sst_tensor **out);
SST_API sst_error sst_where(const sst_tensor *cond, const sst_tensor *a, const sst_tensor *b,
                    sst_tensor **out);
SST_API sst_error sst_softmax(const sst_tensor *t, int64_t dim, sst_tensor **out);
SST_API sst_error sst_log_softmax(const sst_tensor *t, int64_t dim, sst_tensor **out);
SST_API sst_error sst_argmax(const sst_tensor *t, int64_t dim, int keepdim, sst_tensor **out);
SST_API sst_error sst_topk(const sst_tensor *t, int64_t k, int64_t dim, sst_tensor **values,
                   sst_tensor **indices);
SST_API sst_error sst_sum(const sst_tensor *t, int64_t dim, int keepdim, sst_tensor **out);

/* Neural-network ops. bias may be NULL. */
SST_API sst_error sst_matmul(const sst_tensor *a, const sst_tensor *b, sst_tensor **out);
SST_API sst_error sst_linear(const sst_tensor *x, const sst_tensor *w, const sst_tensor *bias,
                     sst_tensor **out);
SST_API sst_error sst_layer_norm(const sst_tensor *x, const sst_tensor *w, const sst_tensor *b,
                         double eps, sst_tensor **out);
/* gelu, tanh approximation ("gelu_new" in HF). */
SST_API sst_error sst_gelu_tanh(const sst_tensor *x, sst_tensor **out);
/* gelu, exact (erf) form ("gelu" in HF). */
SST_API sst_error sst_gelu(const sst_tensor *x, sst_tensor **out);
/* silu (swish): x * sigmoid(x). */
SST_API sst_error sst_silu(const sst_tensor *x, sst_tensor **out);
/* RMS norm over the last dimension. plus_one = 0, HF's LlamaRMSNorm: in float32,
 * y = x / sqrt(mean(x^2) + eps), cast back to x's dtype, then times w (if not NULL).
 * plus_one = 1, HF's GemmaRMSNorm: y * (1 + w) in float32, then cast to x's dtype. */
SST_API sst_error sst_rms_norm(const sst_tensor *x, const sst_tensor *w, double eps, int plus_one,
                       sst_tensor **out);
SST_API sst_error sst_embedding(const sst_tensor *weight, const sst_tensor *ids, sst_tensor **out);
/* GPT-J's interleaved rotary embedding on the first rot dims of the last axis:
 * x (..., T, H, D) or any shape whose last axis is D; sin, cos broadcastable to (..., rot/2).
 * out = cat(x_rot*cos' + rotate_every_two(x_rot)*sin', x_pass) with sin'/cos' repeated twice. */
SST_API sst_error sst_rotary_gptj(const sst_tensor *x, const sst_tensor *sin, const sst_tensor *cos,
                          int64_t rot, sst_tensor **out);
/* NeoX / Llama rotary embedding (rotate_half) on the first rot dims of the last axis:
 * x (..., D); sin, cos broadcastable to (..., rot/2).
 * out = cat(x_rot*cos' + rotate_half(x_rot)*sin', x_pass) with sin'/cos' = cat(sin, sin) / cat(cos, cos)
 * and rotate_half(a) = cat(-a[rot/2:], a[:rot/2]). */
SST_API sst_error sst_rotary_half(const sst_tensor *x, const sst_tensor *sin, const sst_tensor *cos,
                          int64_t rot, sst_tensor **out);
/* Causal mask with key padding: valid (B, T) bool -> (B, 1, T, T), true where key j <= query i
 * and key j is valid. */
SST_API sst_error sst_causal_mask(const sst_tensor *valid, sst_tensor **out);
/* Sliding-window mask: qpos (Bq, Tq) and kpos (Bk, Tk) int64 positions of queries and keys ->
 * (B, 1, Tq, Tk) bool, true where kpos > qpos - window (key at most window-1 positions behind the
 * query), AND mask when mask is not NULL (broadcastable to (B, 1, Tq, Tk)). */
SST_API sst_error sst_window_mask(const sst_tensor *mask, const sst_tensor *qpos, const sst_tensor *kpos,
                          int64_t window, sst_tensor **out);
/* Attention: q (B, H, Tq, D), k/v (B, H, Tk, D); mask NULL or boolean broadcastable to
 * (B, H, Tq, Tk) with true = may attend. Scores in float32 scaled by 1/sqrt(D); output in
 * v's dtype. */
SST_API sst_error sst_attention(const sst_tensor *q, const sst_tensor *k, const sst_tensor *v,
                        const sst_tensor *mask, sst_tensor **out);

/* DLPack exchange (docs/tensors.md). DLManagedTensor is the unversioned DLPack struct
 * (dlpack.h); it is only forward-declared here.
 *
 * sst_to_dlpack: a new DLManagedTensor sharing t's storage (no copy); t stays owned by the caller.
 *   The DLPack consumer calls its deleter once, which drops that ATen reference. Until then the
 *   export counts in sst_live_tensors.
 * sst_from_dlpack: a tensor handle over src's storage (no copy). On success the handle owns src:
 *   src->deleter runs when the last ATen reference to the storage goes. On failure src is
 *   untouched and still owned by the caller. Refused: devices other than CPU and CUDA, CUDA
 *   devices that do not exist, dtypes the shim has no code for, more than SST_MAX_DIMS dims.
 * sst_alias: a second handle on the same ATen tensor (no copy).
 * sst_data_info: the data pointer (with the storage offset) and whether t is contiguous.
 * sst_to_contiguous: t itself (a new handle, no copy) when it already has that dtype and device
 *   and is contiguous; otherwise one copy that is. */
struct DLManagedTensor;
SST_API sst_error sst_to_dlpack(const sst_tensor *t, struct DLManagedTensor **out);
SST_API sst_error sst_from_dlpack(struct DLManagedTensor *src, sst_tensor **out);
SST_API sst_error sst_alias(const sst_tensor *t, sst_tensor **out);
SST_API sst_error sst_data_info(const sst_tensor *t, uint64_t *data_ptr, int *contiguous);
SST_API sst_error sst_to_contiguous(const sst_tensor *t, int dtype, int dev_type, int64_t dev_index,
                                   sst_tensor **out);

/* ---- Transfers, fault injection, memory budget, attention over parts (issue 16) ---- */

/* Host->device uploads (from_blob; to from the CPU to CUDA) and device->host reads (copy_to_host;
 * to from CUDA to the CPU: each a synchronisation on CUDA), counted since the process started,
 * and how many of each happened while a hot loop was marked. Any out-pointer may be NULL. */
SST_API sst_error sst_transfer_counts(int64_t *uploads, int64_t *syncs, int64_t *uploads_hot,
                              int64_t *syncs_hot);
/* Marks entering (enter != 0) or leaving (enter == 0) a hot loop (the loop over blocks). The mark
 * is process-wide: transfers of other threads during the loop count as inside it. */
SST_API void sst_hot_loop(int enter);
/* Test hook: linear fails as out of memory when its input is (B, T, C) with B > rows (rows 0:
 * off; rows < 0 leaves the setting). *injected (may be NULL) gets the failures injected so far. */
SST_API void sst_debug_oom_rows(int64_t rows, int64_t *injected);
/* Attention through at::scaled_dot_product_attention in sst_attention: mode 0 never, 1 on CUDA
 * tensors (the default), 2 on every device. Returns the previous mode (mode outside 0..2: the
 * current mode, unchanged). */
SST_API int sst_set_sdpa(int mode);
/* Memory of a CUDA device: free and total as the driver reports them, bytes held by live tensors
 * (allocated) and by the caching allocator (reserved), and the allocator's per-process memory
 * fraction (torch.cuda.set_per_process_memory_fraction; -1 when this build cannot read it). */
SST_API sst_error sst_cuda_memory(int64_t device, int64_t *driver_free, int64_t *total,
                          int64_t *allocated, int64_t *reserved, double *fraction);
/* 1 when sst_cuda_memory can read the memory fraction (built with the CUDA headers), else 0. */
SST_API int sst_cuda_memory_fraction_known(void);
/* Attention of q (B, H, T, D) over n parts of keys and values, k[i]/v[i] (B|1, H, P_i, D): the
 * parts are attended jointly (one softmax over every key, in part order) without concatenating
 * them; a part of batch 1 is shared by every row and never expanded or copied. mask NULL or
 * boolean broadcastable to (B, H, T, ΣP_i), true = may attend. Scores in float32 scaled by
 * 1/sqrt(D); probabilities rounded to v's dtype; the parts' outputs summed in float32 and
 * rounded once to v's dtype. */
SST_API sst_error sst_attention_parts(const sst_tensor *q, sst_tensor *const *k, sst_tensor *const *v,
                              int64_t n, const sst_tensor *mask, sst_tensor **out);

#ifdef __cplusplus
}
#endif
#endif
