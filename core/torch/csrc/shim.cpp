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
  // .to() copies when dtype or device differ; clone() guarantees we never alias caller memory.
  at::Tensor t = host.to(dev, to_scalar(dst_dtype), /*non_blocking=*/false, /*copy=*/true);
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
  SST_END
}

sst_error sst_to(const sst_tensor *t_, int dtype, int dev_type, int64_t dev_index, sst_tensor **out) {
  SST_BEGIN("sst_to")
  check_out(out);
  *out = wrap(T(t_, "t").to(to_device(dev_type, dev_index), to_scalar(dtype)));
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
  *out = wrap(at::linear(T(x, "x"), T(w, "w"), b));
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

}  // extern "C"
