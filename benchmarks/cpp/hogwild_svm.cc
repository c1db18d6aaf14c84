// hogwild_svm.cc -- the side-by-side C++ baseline for benchmarks/bench_realrun.py.
//
// It reproduces the algorithm and the data layout of the original C++ Hogwild! SVM (Niu,
// Recht, Ré, Wright 2011, the Hogwild! code's SVM) from a description of that program;
// it was written for wildcheck and copies no code.  What it keeps from the original:
//
// * fp_type is double; each example is {label, values*, indices*, size} in one array, its
//   values (double[]) and indices (int[]) each allocated with new[] per example, in row
//   order; degrees are unsigned counts of the examples containing each feature;
// * the parameters mu, step_size, step_decay are float;
// * the per-sample update (svm_update below): the margin summed from the last entry down in
//   double; where y·⟨w, x⟩ < 1, w += (step·y)·x; then always w_j *= 1 − step·mu / d_j over
//   the support, last entry first, the factor evaluated in float.  No locks, plain loads
//   and stores;
// * each epoch's timed region: a fresh size_t permutation (new[]), the "lazy" shuffle with
//   rand_r (a uniform swap partner over the whole array for every i; not Fisher--Yates),
//   then the pool's threads each take a contiguous chunk [N·t/T, N·(t+1)/T) of it; the main
//   thread waits on a barrier.  Outside it: the hinge loss, and step *= decay;
// * a pool of pthreads created once and released per epoch by barriers; not pinned
//   (``--pin`` pins worker t to the (t mod count)-th CPU of this process's affinity);
// * built with the original Makefile's flags: g++ -Wall -g -O3 ... -lpthread.
//
// Additions for measurement, all cheap: the permutation array is freed after the clock
// stops; each worker's CPU time (CLOCK_THREAD_CPUTIME_ID, two calls per epoch) and the
// main thread's shuffle CPU time give an on-CPU rate, as realrun reports.
//
// Usage:
//   hogwild_svm DATA --epochs E --threads T [--step S] [--decay D] [--mu M] [--seed X]
//               [--pin] [--orders FILE] [--model-out FILE]
//
// DATA (written by benchmarks/cpp_baseline.py: write_data), little-endian:
//   char magic[8] = "WCHWSVM1"; uint64 N, n_features, nnz;
//   int64 indptr[N+1]; int32 indices[nnz]; float64 values[nnz]; float64 labels[N].
// --orders FILE (tests): int64[E][N], each row a permutation of 0..N-1, used instead of the
//   lazy shuffle.  --model-out FILE: the final weights, float64[n_features].
//
// Output: one JSON line on stdout (samples_per_s over the summed train seconds, the
// per-epoch train seconds, the hinge loss sum after each epoch, ...).  Bad input: one line
// on stderr naming what is wrong and the fix, exit code 2.

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

typedef double fp_type;

static const char kMagic[8] = {'W', 'C', 'H', 'W', 'S', 'V', 'M', '1'};

// One training example, as the original stores it.
struct Example {
  fp_type value;     // the label, ±1
  fp_type* values;   // new fp_type[size]
  int* indices;      // new int[size]
  int size;
};

struct Params {
  float mu;
  float step_size;
  float step_decay;
};

static void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "hogwild_svm: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  std::exit(2);
}

static double now_seconds(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// ---- the model update (Niu et al. 2011, the Hogwild! code's SVM) --------------------------

static inline void svm_update(const Example& ex, fp_type* w, const unsigned* degrees, const Params& p) {
  const fp_type* val = ex.values;
  const int* idx = ex.indices;
  const int k = ex.size;
  fp_type dot = 0;
  for (int i = k - 1; i >= 0; --i) dot += w[idx[i]] * val[i];
  const fp_type wxy = dot * ex.value;
  if (wxy < 1) {
    const fp_type e = p.step_size * ex.value;  // float × double: double
    for (int i = 0; i < k; ++i) w[idx[i]] += e * val[i];
  }
  const float scalar = p.step_size * p.mu;  // float × float: float
  for (int i = k - 1; i >= 0; --i) {
    const int j = idx[i];
    w[j] *= 1 - scalar / degrees[j];  // the factor in float, multiplied into the double
  }
}

static fp_type hinge_loss_sum(const Example* examples, size_t n_examples, const fp_type* w) {
  fp_type total = 0;
  for (size_t e = 0; e < n_examples; ++e) {
    const Example& ex = examples[e];
    fp_type dot = 0;
    for (int i = ex.size - 1; i >= 0; --i) dot += w[ex.indices[i]] * ex.values[i];
    const fp_type margin = 1 - dot * ex.value;
    if (margin > 0) total += margin;
  }
  return total;
}

// ---- the thread pool ----------------------------------------------------------------------

struct Pool {
  pthread_barrier_t start;
  pthread_barrier_t done;
  const Example* examples;
  size_t n_examples;
  fp_type* w;
  const unsigned* degrees;
  const Params* params;
  const size_t* perm;  // this epoch's permutation, set by the main thread before `start`
  int threads;
  bool quit;
  bool pin;
  std::vector<int> cpus;            // this process's CPU affinity, for --pin
  std::vector<double> cpu_seconds;  // each worker's CPU time in the last epoch
  std::vector<int> pin_error;       // pthread_setaffinity_np's result per worker
};

struct WorkerArg {
  Pool* pool;
  int tid;
};

static void* worker_main(void* arg) {
  const WorkerArg* a = static_cast<const WorkerArg*>(arg);
  Pool* pool = a->pool;
  const int tid = a->tid;
  if (pool->pin) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(pool->cpus[tid % pool->cpus.size()], &set);
    pool->pin_error[tid] = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  }
  for (;;) {
    pthread_barrier_wait(&pool->start);
    if (pool->quit) break;
    const double c0 = now_seconds(CLOCK_THREAD_CPUTIME_ID);
    const size_t n = pool->n_examples;
    const size_t lo = n * tid / pool->threads;
    const size_t hi = n * (tid + 1) / pool->threads;
    for (size_t i = lo; i < hi; ++i) svm_update(pool->examples[pool->perm[i]], pool->w, pool->degrees, *pool->params);
    pool->cpu_seconds[tid] = now_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
    pthread_barrier_wait(&pool->done);
  }
  return nullptr;
}

// ---- input --------------------------------------------------------------------------------

struct Options {
  const char* data = nullptr;
  long epochs = -1;
  long threads = -1;
  double step = 0.1;
  double decay = 1.0;
  double mu = 1.0;
  unsigned long seed = 0;
  bool pin = false;
  const char* orders = nullptr;
  const char* model_out = nullptr;
};

static long parse_long(const char* flag, const char* text, long lo, long hi, const char* example) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (errno || end == text || *end || v < lo || v > hi)
    die("%s %s: must be an integer in [%ld, %ld]; e.g. %s %s", flag, text, lo, hi, flag, example);
  return v;
}

static double parse_double(const char* flag, const char* text, double lo, bool lo_open, const char* example) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text, &end);
  if (errno || end == text || *end || !std::isfinite(v) || v < lo || (lo_open && v == lo))
    die("%s %s: must be a finite number %s %g; e.g. %s %s", flag, text, lo_open ? ">" : ">=", lo, flag, example);
  return v;
}

static Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(a, "--pin")) {
      o.pin = true;
    } else if (a[0] == '-' && a[1] == '-') {
      if (!has_value) die("%s needs a value; see the usage at the top of hogwild_svm.cc", a);
      const char* v = argv[++i];
      if (!std::strcmp(a, "--epochs")) o.epochs = parse_long(a, v, 1, 1000000, "20");
      else if (!std::strcmp(a, "--threads")) o.threads = parse_long(a, v, 1, 1024, "2");
      else if (!std::strcmp(a, "--step")) o.step = parse_double(a, v, 0, true, "0.1");
      else if (!std::strcmp(a, "--decay")) o.decay = parse_double(a, v, 0, true, "1.0");
      else if (!std::strcmp(a, "--mu")) o.mu = parse_double(a, v, 0, false, "1.0");
      else if (!std::strcmp(a, "--seed")) o.seed = parse_long(a, v, 0, UINT_MAX, "0");
      else if (!std::strcmp(a, "--orders")) o.orders = v;
      else if (!std::strcmp(a, "--model-out")) o.model_out = v;
      else die("unknown option %s; use --epochs, --threads, --step, --decay, --mu, --seed, --pin, --orders, "
               "--model-out", a);
    } else if (!o.data) {
      o.data = a;
    } else {
      die("a second data file %s (the first was %s); pass one DATA file", a, o.data);
    }
  }
  if (!o.data) die("no DATA file; usage: hogwild_svm DATA --epochs E --threads T [...]");
  if (o.epochs < 0) die("--epochs is required; e.g. --epochs 20");
  if (o.threads < 0) die("--threads is required; e.g. --threads 2");
  return o;
}

static void read_exact(FILE* f, void* dst, size_t bytes, const char* path, const char* what) {
  if (bytes && std::fread(dst, 1, bytes, f) != bytes)
    die("%s: file ends inside %s; rewrite it with benchmarks/cpp_baseline.py write_data", path, what);
}

struct Data {
  Example* examples = nullptr;
  size_t n_examples = 0;
  size_t n_features = 0;
  size_t nnz = 0;
  unsigned* degrees = nullptr;
};

static Data load(const char* path) {
  static_assert(sizeof(int) == 4 && sizeof(double) == 8, "the data file holds int32 and float64");
  const uint32_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  if (first != 1) die("this host is big-endian; the data file is little-endian (not supported)");

  FILE* f = std::fopen(path, "rb");
  if (!f) die("%s: cannot open (%s); write it with benchmarks/cpp_baseline.py write_data", path, std::strerror(errno));
  char magic[8];
  uint64_t header[3];
  read_exact(f, magic, sizeof magic, path, "the magic");
  if (std::memcmp(magic, kMagic, sizeof magic))
    die("%s: not a hogwild_svm data file (bad magic); write it with benchmarks/cpp_baseline.py write_data", path);
  read_exact(f, header, sizeof header, path, "the header");
  Data d;
  d.n_examples = header[0];
  d.n_features = header[1];
  d.nnz = header[2];
  if (d.n_examples == 0 || d.n_features == 0 || d.n_features > (uint64_t)INT_MAX)
    die("%s: N = %zu, n_features = %zu; need N >= 1 and 1 <= n_features <= %d", path, d.n_examples, d.n_features,
        INT_MAX);

  // The file is column-wise; read it whole, then copy each example into its own arrays.
  std::vector<int64_t> indptr(d.n_examples + 1);
  std::vector<int32_t> indices(d.nnz);
  std::vector<double> values(d.nnz);
  std::vector<double> labels(d.n_examples);
  read_exact(f, indptr.data(), indptr.size() * sizeof(int64_t), path, "indptr");
  read_exact(f, indices.data(), indices.size() * sizeof(int32_t), path, "indices");
  read_exact(f, values.data(), values.size() * sizeof(double), path, "values");
  read_exact(f, labels.data(), labels.size() * sizeof(double), path, "labels");
  if (std::fgetc(f) != EOF) die("%s: bytes after the labels; rewrite it with write_data", path);
  std::fclose(f);
  if (indptr[0] != 0 || (uint64_t)indptr[d.n_examples] != d.nnz)
    die("%s: indptr must start at 0 and end at nnz = %zu", path, d.nnz);

  d.examples = new Example[d.n_examples];
  d.degrees = new unsigned[d.n_features]();
  for (size_t e = 0; e < d.n_examples; ++e) {
    const int64_t lo = indptr[e], hi = indptr[e + 1];
    if (hi < lo || hi - lo > INT_MAX) die("%s: indptr decreases (or jumps past INT_MAX) at example %zu", path, e);
    Example& ex = d.examples[e];
    ex.value = labels[e];
    ex.size = (int)(hi - lo);
    ex.values = new fp_type[ex.size];
    ex.indices = new int[ex.size];
    for (int i = 0; i < ex.size; ++i) {
      const int32_t j = indices[lo + i];
      if (j < 0 || (uint64_t)j >= d.n_features)
        die("%s: example %zu has feature %d outside [0, %zu)", path, e, (int)j, d.n_features);
      ex.values[i] = values[lo + i];
      ex.indices[i] = j;
      ++d.degrees[j];
    }
  }
  return d;
}

static std::vector<int64_t> load_orders(const char* path, size_t epochs, size_t n) {
  FILE* f = std::fopen(path, "rb");
  if (!f) die("%s: cannot open (%s); write int64[epochs][N] permutations there", path, std::strerror(errno));
  std::vector<int64_t> orders(epochs * n);
  read_exact(f, orders.data(), orders.size() * sizeof(int64_t), path, "the orders (need int64[epochs][N])");
  if (std::fgetc(f) != EOF) die("%s: longer than int64[%zu][%zu]; write one permutation per epoch", path, epochs, n);
  std::fclose(f);
  std::vector<char> seen(n);
  for (size_t e = 0; e < epochs; ++e) {
    std::fill(seen.begin(), seen.end(), 0);
    for (size_t i = 0; i < n; ++i) {
      const int64_t v = orders[e * n + i];
      if (v < 0 || (uint64_t)v >= n || seen[v])
        die("%s: epoch %zu, entry %zu (%lld) breaks the permutation of 0..%zu; write permutations", path, e, i,
            (long long)v, n - 1);
      seen[v] = 1;
    }
  }
  return orders;
}

// JSON has no NaN; Python's json module reads these tokens.
static void print_number(double v) {
  if (std::isnan(v)) std::printf("NaN");
  else if (std::isinf(v)) std::printf(v > 0 ? "Infinity" : "-Infinity");
  else std::printf("%.17g", v);
}

static void print_list(const std::vector<double>& v) {
  std::printf("[");
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) std::printf(", ");
    print_number(v[i]);
  }
  std::printf("]");
}

// ---- main ---------------------------------------------------------------------------------

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  const double t_load = now_seconds(CLOCK_MONOTONIC);
  Data data = load(opt.data);
  const double load_seconds = now_seconds(CLOCK_MONOTONIC) - t_load;
  const size_t n = data.n_examples;
  const size_t epochs = (size_t)opt.epochs;
  std::vector<int64_t> orders;
  if (opt.orders) orders = load_orders(opt.orders, epochs, n);

  fp_type* w = new fp_type[data.n_features]();
  Params params;
  params.mu = (float)opt.mu;
  params.step_size = (float)opt.step;
  params.step_decay = (float)opt.decay;

  Pool pool;
  pool.examples = data.examples;
  pool.n_examples = n;
  pool.w = w;
  pool.degrees = data.degrees;
  pool.params = &params;
  pool.perm = nullptr;
  pool.threads = (int)opt.threads;
  pool.quit = false;
  pool.pin = opt.pin;
  pool.cpu_seconds.assign(pool.threads, 0.0);
  pool.pin_error.assign(pool.threads, 0);
  if (opt.pin) {
    cpu_set_t mine;
    if (sched_getaffinity(0, sizeof(mine), &mine)) die("--pin: sched_getaffinity failed (%s)", std::strerror(errno));
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &mine)) pool.cpus.push_back(c);
  }
  pthread_barrier_init(&pool.start, nullptr, pool.threads + 1);
  pthread_barrier_init(&pool.done, nullptr, pool.threads + 1);
  std::vector<pthread_t> handles(pool.threads);
  std::vector<WorkerArg> args(pool.threads);
  for (int t = 0; t < pool.threads; ++t) {
    args[t].pool = &pool;
    args[t].tid = t;
    const int rc = pthread_create(&handles[t], nullptr, worker_main, &args[t]);
    if (rc) die("pthread_create for worker %d failed (%s); use fewer --threads", t, std::strerror(rc));
  }

  unsigned seed = (unsigned)opt.seed;
  std::vector<double> epoch_seconds, epoch_loss;
  double oncpu_seconds = 0;
  for (size_t epoch = 0; epoch < epochs; ++epoch) {
    // ---- timed: the reshuffle and the parallel pass ----
    const double t0 = now_seconds(CLOCK_MONOTONIC);
    const double c0 = now_seconds(CLOCK_THREAD_CPUTIME_ID);
    size_t* perm = new size_t[n];
    if (opt.orders) {
      for (size_t i = 0; i < n; ++i) perm[i] = (size_t)orders[epoch * n + i];
    } else {
      for (size_t i = 0; i < n; ++i) perm[i] = i;
      for (size_t i = 0; i < n; ++i) {  // the original's lazy shuffle
        const size_t swapi = (unsigned)(n * (rand_r(&seed) / (RAND_MAX + 1.0)));
        if (swapi != i) {
          const size_t tmp = perm[i];
          perm[i] = perm[swapi];
          perm[swapi] = tmp;
        }
      }
    }
    const double shuffle_cpu = now_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
    pool.perm = perm;
    pthread_barrier_wait(&pool.start);
    pthread_barrier_wait(&pool.done);
    epoch_seconds.push_back(now_seconds(CLOCK_MONOTONIC) - t0);
    // ---- untimed ----
    delete[] perm;
    double slowest = 0;
    for (int t = 0; t < pool.threads; ++t) slowest = pool.cpu_seconds[t] > slowest ? pool.cpu_seconds[t] : slowest;
    oncpu_seconds += shuffle_cpu + slowest;
    epoch_loss.push_back(hinge_loss_sum(data.examples, n, w));
    params.step_size *= params.step_decay;
  }
  pool.quit = true;
  pthread_barrier_wait(&pool.start);
  for (int t = 0; t < pool.threads; ++t) pthread_join(handles[t], nullptr);
  for (int t = 0; t < pool.threads; ++t)
    if (pool.pin_error[t])
      die("--pin: pinning worker %d failed (%s); run without --pin", t, std::strerror(pool.pin_error[t]));

  if (opt.model_out) {
    FILE* f = std::fopen(opt.model_out, "wb");
    if (!f || std::fwrite(w, sizeof(fp_type), data.n_features, f) != data.n_features || std::fclose(f))
      die("%s: cannot write the model (%s); pass a writable --model-out path", opt.model_out, std::strerror(errno));
  }

  double train_seconds = 0;
  for (double s : epoch_seconds) train_seconds += s;
  const double samples = (double)n * epochs;
  std::printf("{\"program\": \"hogwild_svm\", \"threads\": %d, \"epochs\": %zu, \"N\": %zu, \"n_features\": %zu, "
              "\"nnz\": %zu, \"step\": ", pool.threads, epochs, n, data.n_features, data.nnz);
  print_number((float)opt.step);
  std::printf(", \"decay\": ");
  print_number((float)opt.decay);
  std::printf(", \"mu\": ");
  print_number((float)opt.mu);
  std::printf(", \"seed\": %lu, \"pinned\": %s, \"shuffle\": \"%s\", \"samples_per_s\": ", opt.seed,
              opt.pin ? "true" : "false", opt.orders ? "orders" : "lazy");
  print_number(train_seconds > 0 ? samples / train_seconds : NAN);
  std::printf(", \"oncpu_samples_per_s\": ");
  print_number(oncpu_seconds > 0 ? samples / oncpu_seconds : NAN);
  std::printf(", \"train_seconds\": ");
  print_number(train_seconds);
  std::printf(", \"epoch_seconds\": ");
  print_list(epoch_seconds);
  std::printf(", \"loss\": ");
  print_number(epoch_loss.back());
  std::printf(", \"epoch_loss\": ");
  print_list(epoch_loss);
  std::printf(", \"load_seconds\": ");
  print_number(load_seconds);
  std::printf("}\n");
  return 0;
}
