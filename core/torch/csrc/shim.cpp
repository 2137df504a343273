// simplescope libtorch shim: see shim.h for the rules. Each exported body runs inside TRY/CATCH
// so that no C++ exception crosses extern "C", and inside c10::InferenceMode (no autograd).
#include "shim.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/DeviceGuard.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#if defined(SST_CUDA_HEADERS)
// The CUDA caching allocator's per-process memory fraction (torch.cuda.set_per_process_memory_fraction)
// has no device-generic accessor; this header needs the CUDA runtime headers, which the build
// passes when it finds them (python/simplescope/_shimbuild.py). Without them the fraction reads
// as unknown (-1) and the memory budget assumes 1.
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <dlfcn.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

struct sst_tensor {
  at::Tensor t;
};

namespace {

std::atomic<int64_t> g_live{0};

// Transfer counters (sst_transfer_counts): host->device uploads and device->host reads (each a
// synchronisation on CUDA), and how many of each happened while a hot loop was marked
// (sst_hot_loop: the Go block loop marks itself), so tests on the CPU can check that no upload
// or sync sits inside a loop over layers.
std::atomic<int64_t> g_uploads{0}, g_syncs{0}, g_uploads_hot{0}, g_syncs_hot{0}, g_hot_depth{0};

void count_upload() noexcept {
  g_uploads.fetch_add(1, std::memory_order_relaxed);
  if (g_hot_depth.load(std::memory_order_relaxed) > 0) g_uploads_hot.fetch_add(1, std::memory_order_relaxed);
}

void count_sync() noexcept {
  g_syncs.fetch_add(1, std::memory_order_relaxed);
  if (g_hot_depth.load(std::memory_order_relaxed) > 0) g_syncs_hot.fetch_add(1, std::memory_order_relaxed);
}

// Fault injection for tests (sst_debug_oom_rows): linear fails as out of memory when its input
// is (B, T, C) with B above this many rows (0: off).
std::atomic<int64_t> g_oom_rows{0}, g_oom_injected{0};

// Attention through at::scaled_dot_product_attention (sst_set_sdpa): 0 never, 1 on CUDA, 2 on
// every device (tests of the SDPA path on the CPU).
std::atomic<int> g_sdpa{1};

// Uploads up to this size go through pinned host memory and an asynchronous copy.
constexpr int64_t kPinnedMaxBytes = int64_t(64) << 20;

int64_t cuda_count() { return at::hasCUDA() ? static_cast<int64_t>(at::detail::getCUDAHooks().deviceCount()) : 0; }

// Returned when even the error message cannot be allocated; sst_free_error never frees it.
char g_oom_message[] = "[oom] out of memory (the error message itself could not be allocated)";

sst_error make_error(const char *msg) noexcept {
  size_t n = std::strlen(msg);
  char *p = static_cast<char *>(std::malloc(n + 1));
  if (p == nullptr) return g_oom_message;  // never NULL: NULL means success
  std::memcpy(p, msg, n + 1);
  return p;
}

bool looks_like_oom(const char *m) noexcept {
  return std::strstr(m, "out of memory") != nullptr || std::strstr(m, "not enough memory") != nullptr ||
         std::strstr(m, "can't allocate memory") != nullptr;
}

// error_from builds "[oom] "? + where + ": " + what. It never throws: if building the string
// fails, the static out-of-memory message is returned.
sst_error error_from(const char *where, const char *what, bool oom) noexcept {
  try {
    std::string msg = std::string(where) + ": " + what;
    if (oom || looks_like_oom(what)) msg = "[oom] " + msg;
    return make_error(msg.c_str());
  } catch (...) {
    return g_oom_message;
  }
}

sst_tensor *wrap(at::Tensor t) {
  auto *h = new sst_tensor{std::move(t)};
  g_live.fetch_add(1, std::memory_order_relaxed);
  return h;
}

at::ScalarType to_scalar(int code) {
  switch (code) {
    case SST_F32: return at::kFloat;
    case SST_F16: return at::kHalf;
    case SST_BF16: return at::kBFloat16;
    case SST_I64: return at::kLong;
    case SST_F64: return at::kDouble;
    case SST_I32: return at::kInt;
    case SST_U8: return at::kByte;
    case SST_BOOL: return at::kBool;
    case SST_I8: return at::kChar;
    case SST_I16: return at::kShort;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(code));
}

int from_scalar(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return SST_F32;
    case at::kHalf: return SST_F16;
    case at::kBFloat16: return SST_BF16;
    case at::kLong: return SST_I64;
    case at::kDouble: return SST_F64;
    case at::kInt: return SST_I32;
    case at::kByte: return SST_U8;
    case at::kBool: return SST_BOOL;
    case at::kChar: return SST_I8;
    case at::kShort: return SST_I16;
    default: throw std::invalid_argument(std::string("unsupported dtype ") + c10::toString(s));
  }
}

at::Device to_device(int type, int64_t index) {
  if (type == SST_CPU) return at::Device(at::kCPU);
  if (type == SST_CUDA) {
    int64_t n = cuda_count();
    if (index < 0 || index >= n)
      throw std::invalid_argument("CUDA device " + std::to_string(index) + " does not exist (" +
                                  std::to_string(n) + " CUDA devices visible)");
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw std::invalid_argument("unknown device type " + std::to_string(type));
}

const at::Tensor &T(const sst_tensor *t, const char *name) {
  if (t == nullptr) throw std::invalid_argument(std::string("tensor argument '") + name + "' is NULL");
  return t->t;
}

std::vector<int64_t> dims(const int64_t *p, int64_t n) {
  if (n < 0 || n > SST_MAX_DIMS) throw std::invalid_argument("bad number of dimensions " + std::to_string(n));
  if (n > 0 && p == nullptr) throw std::invalid_argument("shape pointer is NULL");
  return std::vector<int64_t>(p, p + n);
}

void check_out(void *out) {
  if (out == nullptr) throw std::invalid_argument("output pointer is NULL");
}

// sdpa_mask returns a boolean mask for at::scaled_dot_product_attention: mask itself, with
// every key allowed in a query row that allows none (a padding row of a left-padded batch).
// SDPA gives NaN for such rows, and a NaN value vector leaks into real rows as 0 * NaN; the
// manual path gives them a uniform softmax. Either way the row is padding and never read.
at::Tensor sdpa_mask(const at::Tensor &mask) {
  at::Tensor m = mask.to(at::kBool);
  return m.logical_or(m.any(-1, /*keepdim=*/true).logical_not());
}

}  // namespace

#define SST_BEGIN(name)            \
  static const char *sst_fn = name; \
  try {                            \
    c10::InferenceMode sst_guard;

#define SST_END                                                          \
  }                                                                      \
  catch (const c10::OutOfMemoryError &e) {                               \
    return error_from(sst_fn, e.what_without_backtrace(), true);         \
  }                                                                      \
  catch (const c10::Error &e) {                                          \
    return error_from(sst_fn, e.what_without_backtrace(), false);        \
  }                                                                      \
  catch (const std::bad_alloc &) {                                       \
    return error_from(sst_fn, "std::bad_alloc", true);                   \
  }                                                                      \
  catch (const std::exception &e) {                                      \
    return error_from(sst_fn, e.what(), false);                          \
  }                                                                      \
  catch (...) {                                                          \
    return error_from(sst_fn, "unknown C++ exception", false);           \
  }                                                                      \
  return nullptr;

// A unary op returning one tensor.
#define SST_UNARY(fname, expr)                                  \
  sst_error fname(const sst_tensor *a_, sst_tensor **out) {     \
    SST_BEGIN(#fname)                                           \
    check_out(out);                                             \
    const at::Tensor &a = T(a_, "a");                           \
    *out = wrap(expr);                                          \
    SST_END                                                     \
  }

#define SST_BINARY(fname, expr)                                                  \
  sst_error fname(const sst_tensor *a_, const sst_tensor *b_, sst_tensor **out) { \
    SST_BEGIN(#fname)                                                            \
    check_out(out);                                                              \
    const at::Tensor &a = T(a_, "a");                                            \
    const at::Tensor &b = T(b_, "b");                                            \
    *out = wrap(expr);                                                           \
    SST_END                                                                      \
  }

extern "C" {

void sst_free_error(sst_error e) {
  if (e != g_oom_message) std::free(e);
}

void sst_free(sst_tensor *t) {
  if (t == nullptr) return;
  g_live.fetch_sub(1, std::memory_order_relaxed);
  try {
    delete t;
  } catch (...) {
  }
}

int64_t sst_live_tensors(void) { return g_live.load(std::memory_order_relaxed); }

sst_error sst_torch_version(char **out) {
  SST_BEGIN("sst_torch_version")
  check_out(out);
  *out = make_error(TORCH_VERSION);
  SST_END
}

sst_error sst_cuda_device_count(int64_t *out) {
  SST_BEGIN("sst_cuda_device_count")
  check_out(out);
  *out = cuda_count();
  SST_END
}

sst_error sst_cuda_mem_info(int64_t device, int64_t *free_bytes, int64_t *total_bytes) {
  SST_BEGIN("sst_cuda_mem_info")
  check_out(free_bytes);
  check_out(total_bytes);
  at::Device dev = to_device(SST_CUDA, device);
  // Free memory as this process can use it: what the driver reports free plus what PyTorch's
  // caching allocator holds reserved but unused (after one evaluation that can be most of it).
  try {
    c10::DeviceAllocator *alloc = c10::getDeviceAllocator(c10::DeviceType::CUDA);
    auto idx = static_cast<c10::DeviceIndex>(device);
    auto info = alloc->getMemoryInfo(idx);
    auto st = alloc->getDeviceStats(idx);
    int64_t cached = st.reserved_bytes[0].current - st.allocated_bytes[0].current;
    *free_bytes = static_cast<int64_t>(info.first) + (cached > 0 ? cached : 0);
    *total_bytes = static_cast<int64_t>(info.second);
    return nullptr;
  } catch (const std::exception &) {
    // fall through to the CUDA runtime
  }
  // cudaMemGetInfo from the CUDA runtime libtorch_cuda loaded; looking it up at run time keeps
  // the shim free of CUDA headers.
  using fn_t = int (*)(size_t *, size_t *);
  auto fn = reinterpret_cast<fn_t>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
  if (fn == nullptr) throw std::runtime_error("cudaMemGetInfo not found in the process");
  c10::DeviceGuard guard(dev);
  size_t f = 0, t = 0;
  int rc = fn(&f, &t);
  if (rc != 0) throw std::runtime_error("cudaMemGetInfo failed with code " + std::to_string(rc));
  *free_bytes = static_cast<int64_t>(f);
  *total_bytes = static_cast<int64_t>(t);
  SST_END
}

sst_error sst_set_num_threads(int64_t n) {
  SST_BEGIN("sst_set_num_threads")
  if (n < 1) throw std::invalid_argument("thread count must be >= 1, got " + std::to_string(n));
  at::set_num_threads(static_cast<int>(n));
  SST_END
}

sst_error sst_get_num_threads(int64_t *out) {
  SST_BEGIN("sst_get_num_threads")
  check_out(out);
  *out = at::get_num_threads();
  SST_END
}

sst_error sst_get_tf32(int *cublas, int *cudnn) {
  SST_BEGIN("sst_get_tf32")
  check_out(cublas);
  check_out(cudnn);
  *cublas = at::globalContext().allowTF32CuBLAS() ? 1 : 0;
  *cudnn = at::globalContext().allowTF32CuDNN() ? 1 : 0;
  SST_END
}

sst_error sst_set_tf32(int cublas, int cudnn) {
  SST_BEGIN("sst_set_tf32")
  at::globalContext().setAllowTF32CuBLAS(cublas != 0);
  at::globalContext().setAllowTF32CuDNN(cudnn != 0);
  SST_END
}

sst_error sst_from_blob(const void *data, const int64_t *shape, int64_t ndim, int src_dtype,
                        int dst_dtype, int dev_type, int64_t dev_index, sst_tensor **out) {
  SST_BEGIN("sst_from_blob")
  check_out(out);
  auto sh = dims(shape, ndim);
  int64_t numel = 1;
  for (auto d : sh) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape");
    numel *= d;
  }
  if (numel > 0 && data == nullptr) throw std::invalid_argument("data pointer is NULL");
  at::Device dev = to_device(dev_type, dev_index);
  auto src_opts = at::TensorOptions().dtype(to_scalar(src_dtype)).device(at::kCPU);
  at::Tensor host = numel == 0 ? at::empty(sh, src_opts)
                               : at::from_blob(const_cast<void *>(data), sh, src_opts);
  at::Tensor t;
  if (dev.is_cuda() && numel > 0 && host.nbytes() <= static_cast<size_t>(kPinnedMaxBytes)) {
    // Small uploads (indices, masks, positions): staged in pinned memory and copied without a
    // synchronisation; the caching host allocator keeps the staging block until the copy is
    // done, and the caller's memory is free to go as soon as this returns. The dtype changes on
    // the device.
    at::Tensor pinned = at::empty(sh, src_opts.pinned_memory(true));
    pinned.copy_(host);
    t = pinned.to(dev, pinned.scalar_type(), /*non_blocking=*/true).to(to_scalar(dst_dtype));
  } else {
    // .to() copies when dtype or device differ; copy=true guarantees we never alias caller memory.
    t = host.to(dev, to_scalar(dst_dtype), /*non_blocking=*/false, /*copy=*/true);
  }
  count_upload();
  *out = wrap(std::move(t));
  SST_END
}

sst_error sst_zeros(const int64_t *shape, int64_t ndim, int dtype, int dev_type, int64_t dev_index,
                    sst_tensor **out) {
  SST_BEGIN("sst_zeros")
  check_out(out);
  *out = wrap(at::zeros(dims(shape, ndim), at::TensorOptions().dtype(to_scalar(dtype)).device(to_device(dev_type, dev_index))));
  SST_END
}

sst_error sst_full(const int64_t *shape, int64_t ndim, double value, int dtype, int dev_type,
                   int64_t dev_index, sst_tensor **out) {
  SST_BEGIN("sst_full")
  check_out(out);
  *out = wrap(at::full(dims(shape, ndim), value, at::TensorOptions().dtype(to_scalar(dtype)).device(to_device(dev_type, dev_index))));
  SST_END
}

sst_error sst_arange(int64_t start, int64_t end, int dtype, int dev_type, int64_t dev_index,
                     sst_tensor **out) {
  SST_BEGIN("sst_arange")
  check_out(out);
  *out = wrap(at::arange(start, end, at::TensorOptions().dtype(to_scalar(dtype)).device(to_device(dev_type, dev_index))));
  SST_END
}

sst_error sst_info(const sst_tensor *t_, int *dtype, int64_t *ndim, int64_t *shape, int *dev_type,
                   int64_t *dev_index) {
  SST_BEGIN("sst_info")
  const at::Tensor &t = T(t_, "t");
  if (t.dim() > SST_MAX_DIMS) throw std::invalid_argument("tensor has too many dimensions");
  if (dtype) *dtype = from_scalar(t.scalar_type());
  if (ndim) *ndim = t.dim();
  if (shape)
    for (int64_t i = 0; i < t.dim(); i++) shape[i] = t.size(i);
  if (dev_type) *dev_type = t.is_cuda() ? SST_CUDA : SST_CPU;
  if (dev_index) *dev_index = t.is_cuda() ? t.device().index() : 0;
  SST_END
}

sst_error sst_copy_to_host(const sst_tensor *t_, void *dst, int64_t nbytes) {
  SST_BEGIN("sst_copy_to_host")
  const at::Tensor &t = T(t_, "t");
  int64_t want = t.numel() * static_cast<int64_t>(t.element_size());
  if (nbytes != want)
    throw std::invalid_argument("destination holds " + std::to_string(nbytes) + " bytes, tensor " +
                                std::to_string(want));
  if (want == 0) return nullptr;
  if (dst == nullptr) throw std::invalid_argument("destination pointer is NULL");
  at::Tensor host = at::from_blob(dst, t.sizes(), at::TensorOptions().dtype(t.scalar_type()));
  host.copy_(t);
  count_sync();
  SST_END
}

sst_error sst_to(const sst_tensor *t_, int dtype, int dev_type, int64_t dev_index, sst_tensor **out) {
  SST_BEGIN("sst_to")
  check_out(out);
  const at::Tensor &t = T(t_, "t");
  at::Device dev = to_device(dev_type, dev_index);
  *out = wrap(t.to(dev, to_scalar(dtype)));
  if (t.is_cpu() && dev.is_cuda()) count_upload();
  if (t.is_cuda() && dev.is_cpu()) count_sync();
  SST_END
}

SST_UNARY(sst_clone, a.clone())
SST_UNARY(sst_contiguous, a.contiguous())
SST_UNARY(sst_neg, a.neg())
SST_UNARY(sst_sin, a.sin())
SST_UNARY(sst_cos, a.cos())
SST_UNARY(sst_gelu_tanh, at::gelu(a, "tanh"))
SST_UNARY(sst_gelu, at::gelu(a))
SST_UNARY(sst_silu, at::silu(a))
SST_BINARY(sst_add, a.add(b))
SST_BINARY(sst_sub, a.sub(b))
SST_BINARY(sst_mul, a.mul(b))
SST_BINARY(sst_div, a.div(b))
SST_BINARY(sst_eq, a.eq(b))
SST_BINARY(sst_matmul, at::matmul(a, b))
SST_BINARY(sst_embedding, at::embedding(a, b))

sst_error sst_reshape(const sst_tensor *t, const int64_t *shape, int64_t ndim, sst_tensor **out) {
  SST_BEGIN("sst_reshape")
  check_out(out);
  *out = wrap(T(t, "t").reshape(dims(shape, ndim)));
  SST_END
}

sst_error sst_permute(const sst_tensor *t, const int64_t *d, int64_t ndim, sst_tensor **out) {
  SST_BEGIN("sst_permute")
  check_out(out);
  *out = wrap(T(t, "t").permute(dims(d, ndim)));
  SST_END
}

sst_error sst_transpose(const sst_tensor *t, int64_t d0, int64_t d1, sst_tensor **out) {
  SST_BEGIN("sst_transpose")
  check_out(out);
  *out = wrap(T(t, "t").transpose(d0, d1));
  SST_END
}

sst_error sst_narrow(const sst_tensor *t, int64_t dim, int64_t start, int64_t length, sst_tensor **out) {
  SST_BEGIN("sst_narrow")
  check_out(out);
  *out = wrap(T(t, "t").narrow(dim, start, length));
  SST_END
}

sst_error sst_select(const sst_tensor *t, int64_t dim, int64_t index, sst_tensor **out) {
  SST_BEGIN("sst_select")
  check_out(out);
  *out = wrap(T(t, "t").select(dim, index));
  SST_END
}

sst_error sst_unsqueeze(const sst_tensor *t, int64_t dim, sst_tensor **out) {
  SST_BEGIN("sst_unsqueeze")
  check_out(out);
  *out = wrap(T(t, "t").unsqueeze(dim));
  SST_END
}

sst_error sst_expand(const sst_tensor *t, const int64_t *shape, int64_t ndim, sst_tensor **out) {
  SST_BEGIN("sst_expand")
  check_out(out);
  *out = wrap(T(t, "t").expand(dims(shape, ndim)));
  SST_END
}

static std::vector<at::Tensor> tensor_list(sst_tensor *const *ts, int64_t n) {
  if (n <= 0) throw std::invalid_argument("empty tensor list");
  if (ts == nullptr) throw std::invalid_argument("tensor list pointer is NULL");
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int64_t i = 0; i < n; i++) v.push_back(T(ts[i], "list element"));
  return v;
}

sst_error sst_cat(sst_tensor *const *ts, int64_t n, int64_t dim, sst_tensor **out) {
  SST_BEGIN("sst_cat")
  check_out(out);
  *out = wrap(at::cat(tensor_list(ts, n), dim));
  SST_END
}

sst_error sst_stack(sst_tensor *const *ts, int64_t n, int64_t dim, sst_tensor **out) {
  SST_BEGIN("sst_stack")
  check_out(out);
  *out = wrap(at::stack(tensor_list(ts, n), dim));
  SST_END
}

sst_error sst_index_select(const sst_tensor *t, int64_t dim, const sst_tensor *index, sst_tensor **out) {
  SST_BEGIN("sst_index_select")
  check_out(out);
  *out = wrap(T(t, "t").index_select(dim, T(index, "index")));
  SST_END
}

sst_error sst_index_copy(const sst_tensor *t, int64_t dim, const sst_tensor *index, const sst_tensor *src,
                         sst_tensor **out) {
  SST_BEGIN("sst_index_copy")
  check_out(out);
  *out = wrap(T(t, "t").index_copy(dim, T(index, "index"), T(src, "src")));
  SST_END
}

sst_error sst_gather(const sst_tensor *t, int64_t dim, const sst_tensor *index, sst_tensor **out) {
  SST_BEGIN("sst_gather")
  check_out(out);
  *out = wrap(T(t, "t").gather(dim, T(index, "index")));
  SST_END
}

sst_error sst_add_scalar(const sst_tensor *a, double s, sst_tensor **out) {
  SST_BEGIN("sst_add_scalar")
  check_out(out);
  *out = wrap(T(a, "a").add(s));
  SST_END
}

sst_error sst_mul_scalar(const sst_tensor *a, double s, sst_tensor **out) {
  SST_BEGIN("sst_mul_scalar")
  check_out(out);
  *out = wrap(T(a, "a").mul(s));
  SST_END
}

sst_error sst_masked_fill(const sst_tensor *t, const sst_tensor *mask, double value, sst_tensor **out) {
  SST_BEGIN("sst_masked_fill")
  check_out(out);
  *out = wrap(T(t, "t").masked_fill(T(mask, "mask"), value));
  SST_END
}

sst_error sst_where(const sst_tensor *cond, const sst_tensor *a, const sst_tensor *b, sst_tensor **out) {
  SST_BEGIN("sst_where")
  check_out(out);
  *out = wrap(at::where(T(cond, "cond"), T(a, "a"), T(b, "b")));
  SST_END
}

sst_error sst_softmax(const sst_tensor *t, int64_t dim, sst_tensor **out) {
  SST_BEGIN("sst_softmax")
  check_out(out);
  *out = wrap(T(t, "t").softmax(dim));
  SST_END
}

sst_error sst_log_softmax(const sst_tensor *t, int64_t dim, sst_tensor **out) {
  SST_BEGIN("sst_log_softmax")
  check_out(out);
  *out = wrap(T(t, "t").log_softmax(dim));
  SST_END
}

sst_error sst_argmax(const sst_tensor *t, int64_t dim, int keepdim, sst_tensor **out) {
  SST_BEGIN("sst_argmax")
  check_out(out);
  *out = wrap(T(t, "t").argmax(dim, keepdim != 0));
  SST_END
}

sst_error sst_topk(const sst_tensor *t, int64_t k, int64_t dim, sst_tensor **values, sst_tensor **indices) {
  SST_BEGIN("sst_topk")
  check_out(values);
  check_out(indices);
  auto r = T(t, "t").topk(k, dim);
  sst_tensor *v = wrap(std::get<0>(r));
  try {
    *indices = wrap(std::get<1>(r));
  } catch (...) {
    sst_free(v);
    throw;
  }
  *values = v;
  SST_END
}

sst_error sst_sum(const sst_tensor *t, int64_t dim, int keepdim, sst_tensor **out) {
  SST_BEGIN("sst_sum")
  check_out(out);
  *out = wrap(T(t, "t").sum(dim, keepdim != 0));
  SST_END
}

sst_error sst_linear(const sst_tensor *x, const sst_tensor *w, const sst_tensor *bias, sst_tensor **out) {
  SST_BEGIN("sst_linear")
  check_out(out);
  c10::optional<at::Tensor> b;
  if (bias != nullptr) b = bias->t;
  const at::Tensor &xt = T(x, "x");
  int64_t oom_rows = g_oom_rows.load(std::memory_order_relaxed);
  if (oom_rows > 0 && xt.dim() == 3 && xt.size(0) > oom_rows) {
    g_oom_injected.fetch_add(1, std::memory_order_relaxed);
    return error_from(sst_fn, ("injected out of memory: " + std::to_string(xt.size(0)) + " rows > " +
                               std::to_string(oom_rows)).c_str(), true);
  }
  *out = wrap(at::linear(xt, T(w, "w"), b));
  SST_END
}

sst_error sst_layer_norm(const sst_tensor *x_, const sst_tensor *w, const sst_tensor *b, double eps,
                         sst_tensor **out) {
  SST_BEGIN("sst_layer_norm")
  check_out(out);
  const at::Tensor &x = T(x_, "x");
  c10::optional<at::Tensor> wt, bt;
  if (w != nullptr) wt = w->t;
  if (b != nullptr) bt = b->t;
  *out = wrap(at::layer_norm(x, {x.size(-1)}, wt, bt, eps));
  SST_END
}

sst_error sst_rotary_gptj(const sst_tensor *x_, const sst_tensor *sin_, const sst_tensor *cos_, int64_t rot,
                          sst_tensor **out) {
  SST_BEGIN("sst_rotary_gptj")
  check_out(out);
  const at::Tensor &x = T(x_, "x");
  int64_t D = x.size(-1);
  if (rot <= 0 || rot > D || rot % 2 != 0)
    throw std::invalid_argument("rotary dim " + std::to_string(rot) + " invalid for head dim " + std::to_string(D));
  at::Tensor xr = x.narrow(-1, 0, rot);
  at::Tensor sin = T(sin_, "sin").repeat_interleave(2, -1);
  at::Tensor cos = T(cos_, "cos").repeat_interleave(2, -1);
  // rotate_every_two: pairs (x0, x1) -> (-x1, x0)
  auto shp = xr.sizes().vec();
  shp.back() = rot / 2;
  shp.push_back(2);
  at::Tensor pairs = xr.reshape(shp);
  at::Tensor rotated = at::stack({pairs.select(-1, 1).neg(), pairs.select(-1, 0)}, -1).flatten(-2);
  at::Tensor y = xr * cos + rotated * sin;
  if (rot < D) y = at::cat({y.to(x.scalar_type()), x.narrow(-1, rot, D - rot)}, -1);
  *out = wrap(y.to(x.scalar_type()));
  SST_END
}

sst_error sst_rms_norm(const sst_tensor *x_, const sst_tensor *w, double eps, int plus_one, sst_tensor **out) {
  SST_BEGIN("sst_rms_norm")
  check_out(out);
  const at::Tensor &x = T(x_, "x");
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor y = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true).add(eps));
  if (plus_one != 0) {
    if (w != nullptr) y = y * w->t.to(at::kFloat).add(1.0);  // Gemma: (x * (1 + w)) then cast
    y = y.to(x.scalar_type());
  } else {
    y = y.to(x.scalar_type());  // Llama: cast, then w * x
    if (w != nullptr) y = w->t * y;
  }
  *out = wrap(std::move(y));
  SST_END
}

sst_error sst_rotary_half(const sst_tensor *x_, const sst_tensor *sin_, const sst_tensor *cos_, int64_t rot,
                          sst_tensor **out) {
  SST_BEGIN("sst_rotary_half")
  check_out(out);
  const at::Tensor &x = T(x_, "x");
  int64_t D = x.size(-1);
  if (rot <= 0 || rot > D || rot % 2 != 0)
    throw std::invalid_argument("rotary dim " + std::to_string(rot) + " invalid for head dim " + std::to_string(D));
  const at::Tensor &sin = T(sin_, "sin");
  const at::Tensor &cos = T(cos_, "cos");
  at::Tensor xr = x.narrow(-1, 0, rot);
  at::Tensor s2 = at::cat({sin, sin}, -1);
  at::Tensor c2 = at::cat({cos, cos}, -1);
  // rotate_half: (a1, a2) -> (-a2, a1)
  at::Tensor rotated = at::cat({xr.narrow(-1, rot / 2, rot / 2).neg(), xr.narrow(-1, 0, rot / 2)}, -1);
  at::Tensor y = xr * c2 + rotated * s2;
  if (rot < D) y = at::cat({y.to(x.scalar_type()), x.narrow(-1, rot, D - rot)}, -1);
  *out = wrap(y.to(x.scalar_type()));
  SST_END
}

sst_error sst_window_mask(const sst_tensor *mask_, const sst_tensor *qpos_, const sst_tensor *kpos_, int64_t window,
                          sst_tensor **out) {
  SST_BEGIN("sst_window_mask")
  check_out(out);
  const at::Tensor &qpos = T(qpos_, "qpos");
  const at::Tensor &kpos = T(kpos_, "kpos");
  if (qpos.dim() != 2 || kpos.dim() != 2) throw std::invalid_argument("qpos and kpos must be (B, T)");
  if (window <= 0) throw std::invalid_argument("window must be positive, got " + std::to_string(window));
  // (Bq, 1, Tq, 1) vs (Bk, 1, 1, Tk)
  at::Tensor m = kpos.unsqueeze(1).unsqueeze(1).gt(qpos.unsqueeze(1).unsqueeze(-1).sub(window));
  if (mask_ != nullptr) m = m.logical_and(mask_->t.to(at::kBool));
  *out = wrap(std::move(m));
  SST_END
}

sst_error sst_causal_mask(const sst_tensor *valid_, sst_tensor **out) {
  SST_BEGIN("sst_causal_mask")
  check_out(out);
  const at::Tensor &valid = T(valid_, "valid");
  if (valid.dim() != 2) throw std::invalid_argument("valid must be (B, T)");
  int64_t n = valid.size(1);
  at::Tensor causal = at::ones({n, n}, valid.options().dtype(at::kBool)).tril();  // (T, T)
  // (B, 1, T, T): query i may attend key j when j <= i and key j is a real token
  *out = wrap(causal.unsqueeze(0).unsqueeze(0).logical_and(valid.to(at::kBool).unsqueeze(1).unsqueeze(1)));
  SST_END
}

sst_error sst_attention(const sst_tensor *q_, const sst_tensor *k_, const sst_tensor *v_, const sst_tensor *mask_,
                        sst_tensor **out) {
  SST_BEGIN("sst_attention")
  check_out(out);
  const at::Tensor &q = T(q_, "q");
  const at::Tensor &k = T(k_, "k");
  const at::Tensor &v = T(v_, "v");
  int sdpa = g_sdpa.load(std::memory_order_relaxed);
  if (sdpa == 2 || (sdpa == 1 && q.is_cuda())) {
    c10::optional<at::Tensor> m;
    if (mask_ != nullptr) m = sdpa_mask(mask_->t);
    *out = wrap(at::scaled_dot_product_attention(q, k, v, m));
    return nullptr;
  }
  double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor s = at::matmul(q.to(at::kFloat), k.to(at::kFloat).transpose(-1, -2)).mul_(scale);
  if (mask_ != nullptr) {
    // like HF: disallowed scores get the most negative float (fully masked rows stay finite)
    s.masked_fill_(mask_->t.logical_not(), std::numeric_limits<float>::lowest());
  }
  at::Tensor p = s.softmax(-1).to(v.scalar_type());
  *out = wrap(at::matmul(p, v));
  SST_END
}


/* ---- issue 16: transfers, fault injection, memory budget, attention over parts ---- */

sst_error sst_transfer_counts(int64_t *uploads, int64_t *syncs, int64_t *uploads_hot, int64_t *syncs_hot) {
  SST_BEGIN("sst_transfer_counts")
  if (uploads) *uploads = g_uploads.load(std::memory_order_relaxed);
  if (syncs) *syncs = g_syncs.load(std::memory_order_relaxed);
  if (uploads_hot) *uploads_hot = g_uploads_hot.load(std::memory_order_relaxed);
  if (syncs_hot) *syncs_hot = g_syncs_hot.load(std::memory_order_relaxed);
  SST_END
}

void sst_hot_loop(int enter) {
  if (enter) {
    g_hot_depth.fetch_add(1, std::memory_order_relaxed);
  } else {
    g_hot_depth.fetch_sub(1, std::memory_order_relaxed);
  }
}

void sst_debug_oom_rows(int64_t rows, int64_t *injected) {
  if (rows >= 0) g_oom_rows.store(rows, std::memory_order_relaxed);
  if (injected) *injected = g_oom_injected.load(std::memory_order_relaxed);
}

int sst_set_sdpa(int mode) {
  if (mode >= 0 && mode <= 2) return g_sdpa.exchange(mode);
  return g_sdpa.load();
}

sst_error sst_cuda_memory(int64_t device, int64_t *driver_free, int64_t *total, int64_t *allocated,
                          int64_t *reserved, double *fraction) {
  SST_BEGIN("sst_cuda_memory")
  check_out(driver_free);
  check_out(total);
  check_out(allocated);
  check_out(reserved);
  check_out(fraction);
  to_device(SST_CUDA, device);  // checks the index
  auto idx = static_cast<c10::DeviceIndex>(device);
  c10::DeviceAllocator *alloc = c10::getDeviceAllocator(c10::DeviceType::CUDA);
  auto st = alloc->getDeviceStats(idx);
  *allocated = st.allocated_bytes[0].current;  // held by live tensors
  *reserved = st.reserved_bytes[0].current;    // held by the caching allocator, used or not
  try {
    auto info = alloc->getMemoryInfo(idx);  // cudaMemGetInfo: (free, total) as the driver sees it
    *driver_free = static_cast<int64_t>(info.first);
    *total = static_cast<int64_t>(info.second);
  } catch (const std::exception &) {
    // an allocator without getMemoryInfo: the CUDA runtime's cudaMemGetInfo, found at run time
    using fn_t = int (*)(size_t *, size_t *);
    auto fn = reinterpret_cast<fn_t>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
    if (fn == nullptr) throw std::runtime_error("cudaMemGetInfo not found in the process");
    c10::DeviceGuard guard(at::Device(at::kCUDA, idx));
    size_t f = 0, t = 0;
    int rc = fn(&f, &t);
    if (rc != 0) throw std::runtime_error("cudaMemGetInfo failed with code " + std::to_string(rc));
    *driver_free = static_cast<int64_t>(f);
    *total = static_cast<int64_t>(t);
  }
#if defined(SST_CUDA_HEADERS)
  *fraction = c10::cuda::CUDACachingAllocator::getMemoryFraction(idx);
#else
  *fraction = -1;
#endif
  SST_END
}

int sst_cuda_memory_fraction_known(void) {
#if defined(SST_CUDA_HEADERS)
  return 1;
#else
  return 0;
#endif
}

namespace {

// part_scores returns q (B, H, T, D) against keys k (Bk, H, P, D) in float32, (B, H, T, P). A
// key batch of 1 with B > 1 is shared by every row: the rows' queries are folded into one
// matrix per head, (H, B*T, D) x (H, D, P), so the keys are neither expanded nor copied.
at::Tensor part_scores(const at::Tensor &qf, const at::Tensor &k) {
  int64_t B = qf.size(0), H = qf.size(1), T = qf.size(2), D = qf.size(3);
  at::Tensor kf = k.to(at::kFloat);
  if (k.size(0) == B) return at::matmul(qf, kf.transpose(-1, -2));
  if (k.size(0) != 1) throw std::invalid_argument("attention part: key batch must be 1 or the query batch");
  at::Tensor qh = qf.permute({1, 0, 2, 3}).reshape({H, B * T, D});
  at::Tensor s = at::bmm(qh, kf.select(0, 0).transpose(1, 2));  // (H, B*T, P)
  return s.reshape({H, B, T, k.size(2)}).permute({1, 0, 2, 3});
}

// part_values returns p (B, H, T, P) times values v (Bv, H, P, D): (B, H, T, D) in p's dtype,
// shared values (Bv = 1) folded like part_scores.
at::Tensor part_values(const at::Tensor &p, const at::Tensor &v) {
  int64_t B = p.size(0), H = p.size(1), T = p.size(2), P = p.size(3);
  if (v.size(0) == B) return at::matmul(p, v);
  if (v.size(0) != 1) throw std::invalid_argument("attention part: value batch must be 1 or the query batch");
  at::Tensor ph = p.permute({1, 0, 2, 3}).reshape({H, B * T, P});
  at::Tensor o = at::bmm(ph, v.select(0, 0));  // (H, B*T, D)
  return o.reshape({H, B, T, v.size(3)}).permute({1, 0, 2, 3});
}

}  // namespace

sst_error sst_attention_parts(const sst_tensor *q_, sst_tensor *const *ks, sst_tensor *const *vs, int64_t n,
                              const sst_tensor *mask_, sst_tensor **out) {
  SST_BEGIN("sst_attention_parts")
  check_out(out);
  const at::Tensor &q = T(q_, "q");
  std::vector<at::Tensor> k = tensor_list(ks, n), v = tensor_list(vs, n);
  if (q.dim() != 4) throw std::invalid_argument("attention: q must be (B, H, T, D)");
  for (int64_t i = 0; i < n; i++) {
    if (k[i].dim() != 4 || v[i].dim() != 4 || k[i].size(2) != v[i].size(2))
      throw std::invalid_argument("attention part " + std::to_string(i) + ": k and v must be (B|1, H, P, D) alike");
  }
  double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  at::Tensor qf = q.to(at::kFloat);
  std::vector<at::Tensor> scores;
  scores.reserve(n);
  for (int64_t i = 0; i < n; i++) scores.push_back(part_scores(qf, k[i]));
  at::Tensor s = (n == 1 ? scores[0] : at::cat(scores, -1)).mul(scale);  // (B, H, T, ΣP)
  if (mask_ != nullptr) s.masked_fill_(mask_->t.logical_not(), std::numeric_limits<float>::lowest());
  at::Tensor p = s.softmax(-1).to(v[0].scalar_type());
  if (n == 1) {
    *out = wrap(part_values(p, v[0]));
    return nullptr;
  }
  // the parts' outputs summed in float32 and rounded once
  at::Tensor acc;
  int64_t off = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t P = k[i].size(2);
    at::Tensor o = part_values(p.narrow(-1, off, P), v[i]).to(at::kFloat);
    acc = i == 0 ? o : acc.add_(o);
    off += P;
  }
  *out = wrap(acc.to(v[0].scalar_type()));
  SST_END
}

}  // extern "C"

// ---------------------------------------------------------------------------------------------
// DLPack exchange (shim.h, docs/tensors.md).

#include <ATen/DLConvertor.h>

#include <memory>
#include <new>

namespace {

// An exported tensor: our own DLManagedTensor around the one at::toDLPack made, so that the
// export counts in g_live until its consumer calls the deleter.
struct SstExport {
  DLManagedTensor mt;     // what the consumer sees; mt.manager_ctx points back here
  DLManagedTensor *inner; // at::toDLPack's, holding the ATen reference
};

void sst_export_deleter(DLManagedTensor *self) noexcept {
  if (self == nullptr) return;
  auto *e = static_cast<SstExport *>(self->manager_ctx);
  DLManagedTensor *inner = e->inner;
  delete e;
  try {
    if (inner != nullptr && inner->deleter != nullptr) inner->deleter(inner);
  } catch (...) {
  }
  g_live.fetch_sub(1, std::memory_order_relaxed);
}

// The import's deleter is armed only once the handle exists: if fromDLPack or anything after it
// throws, the half-built tensor's destruction must not free memory the caller still owns.
struct SstImport {
  DLManagedTensor *src;
  std::atomic<bool> armed{false};
};

}  // namespace

extern "C" {

sst_error sst_to_dlpack(const sst_tensor *t, DLManagedTensor **out) {
  SST_BEGIN("sst_to_dlpack")
  check_out(out);
  const at::Tensor &x = T(t, "t");
  DLManagedTensor *inner = at::toDLPack(x);
  auto *e = new (std::nothrow) SstExport;
  if (e == nullptr) {
    inner->deleter(inner);
    throw std::bad_alloc();
  }
  e->mt = *inner;  // dl_tensor's shape/strides point into inner's ATen tensor, alive as long as e
  e->mt.manager_ctx = e;
  e->mt.deleter = &sst_export_deleter;
  e->inner = inner;
  g_live.fetch_add(1, std::memory_order_relaxed);
  *out = &e->mt;
  SST_END
}

sst_error sst_from_dlpack(DLManagedTensor *src, sst_tensor **out) {
  SST_BEGIN("sst_from_dlpack")
  check_out(out);
  if (src == nullptr) throw std::invalid_argument("DLManagedTensor is NULL");
  const DLTensor &d = src->dl_tensor;
  switch (d.device.device_type) {
    case kDLCPU:
      break;
    case kDLCUDA:
      to_device(SST_CUDA, d.device.device_id);  // throws when the device does not exist
      break;
    default:
      throw std::invalid_argument("DLPack device type " + std::to_string(static_cast<int>(d.device.device_type)) +
                                  " not supported (want CPU or CUDA memory)");
  }
  if (d.ndim < 0 || d.ndim > SST_MAX_DIMS)
    throw std::invalid_argument("DLPack tensor has " + std::to_string(d.ndim) + " dimensions (max " +
                                std::to_string(SST_MAX_DIMS) + ")");
  if (d.ndim > 0 && d.shape == nullptr) throw std::invalid_argument("DLPack tensor has no shape");
  // fromDLPack ignores byte_offset: hand it a copy whose data pointer includes it.
  DLManagedTensor view = *src;
  view.dl_tensor.data = static_cast<char *>(d.data) + d.byte_offset;
  view.dl_tensor.byte_offset = 0;
  auto ctx = std::make_shared<SstImport>();
  ctx->src = src;
  at::Tensor x = at::fromDLPack(&view, [ctx](void *) {
    if (ctx->armed.exchange(false) && ctx->src->deleter != nullptr) ctx->src->deleter(ctx->src);
  });
  from_scalar(x.scalar_type());  // refuses dtypes the shim has no code for
  sst_tensor *h = wrap(std::move(x));
  ctx->armed.store(true);  // from here on the handle owns src
  *out = h;
  SST_END
}

sst_error sst_alias(const sst_tensor *t, sst_tensor **out) {
  SST_BEGIN("sst_alias")
  check_out(out);
  *out = wrap(T(t, "t"));
  SST_END
}

sst_error sst_data_info(const sst_tensor *t, uint64_t *data_ptr, int *contiguous) {
  SST_BEGIN("sst_data_info")
  const at::Tensor &x = T(t, "t");
  if (data_ptr) *data_ptr = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(x.data_ptr()));
  if (contiguous) *contiguous = x.is_contiguous() ? 1 : 0;
  SST_END
}

sst_error sst_to_contiguous(const sst_tensor *t, int dtype, int dev_type, int64_t dev_index, sst_tensor **out) {
  SST_BEGIN("sst_to_contiguous")
  check_out(out);
  const at::Tensor &x = T(t, "t");
  at::Device dev = to_device(dev_type, dev_index);
  at::ScalarType st = to_scalar(dtype);
  // to() ignores the memory format when nothing else changes; contiguous() returns x itself
  // when it already is contiguous. Either way at most one copy.
  if (x.device() == dev && x.scalar_type() == st)
    *out = wrap(x.contiguous());
  else
    *out = wrap(x.to(dev, st, /*non_blocking=*/false, /*copy=*/false, at::MemoryFormat::Contiguous));
  SST_END
}

}  // extern "C"
