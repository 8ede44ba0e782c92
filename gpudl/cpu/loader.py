"""Compiling the CPU kernels: one decorator, the disk cache, the compile notice, the thread count, argument checks.

Every kernel is `@kernel`: Numba's njit with parallel=True (prange over blocks of the batch or of rows), nogil=True,
error_model="numpy" (no division checks, so loops vectorize) and no fastmath (a NaN must win a max), or a `@part`: the
serial body of one part of the work, compiled alone and run over the parts by one parallel kernel that calls it
through its address (the large kernels, which compile several times faster so: see Part). The op that calls a kernel
first sets Numba's thread count for it (threads_for): work too small to share runs on one thread.

Compiled code is cached on disk, for this CPU, in the first writable of the package's __pycache__ and the user's
cache folder (XDG_CACHE_HOME or ~/.cache, LOCALAPPDATA on Windows)/gpudl, or in GPUDL_CACHE_DIR alone when it is set;
where none is writable the kernels compile in memory, for this process only. The folder is versioned by the sources
of this package and the BLAS they call (Numba's own cache notices changes only in the file of each function, not in
the helpers it calls from other files). The first compilation of a process says so once on stderr.
"""
import hashlib
import os
import sys
import tempfile
import threading
import time

import numba
import numpy
from numba import int64, prange, types
from numba.core import caching, cgutils, event
from numba.core.callconv import RETCODE_NONE, RETCODE_OK
from numba.extending import intrinsic

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
CACHE_ENV = "GPUDL_CACHE_DIR"
MAX_THREADS = numba.config.NUMBA_NUM_THREADS     # the size of Numba's thread pool, fixed when numba is imported

# Elements of work below which a kernel runs on one thread: waking a second thread costs microseconds (tens of them
# on a busy virtual machine), more than it saves on small arrays.
GRAIN = 1 << 15


def _user_cache_home():
    return (os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
            or os.path.join(os.path.expanduser("~"), ".cache"))


def cache_candidates():
    """Where the compiled kernels may be kept, in order of preference: GPUDL_CACHE_DIR alone when it is set, else the
    package's __pycache__ and the user's cache folder."""
    chosen = os.environ.get(CACHE_ENV, "").strip()
    return [chosen] if chosen else [os.path.join(PACKAGE_DIR, "__pycache__"), os.path.join(_user_cache_home(), "gpudl")]


def writable_folder(candidates, name):
    """The first of `candidates`/name that exists (made if need be) and takes a file, else None."""
    for base in candidates:
        path = os.path.join(base, name)
        try:
            os.makedirs(path, exist_ok=True)
            tempfile.TemporaryFile(dir=path).close()
            return path
        except OSError:
            continue
    return None


def source_stamp(extra=""):
    """A digest of this package's sources, numba's and numpy's versions and `extra` (the BLAS the kernels call)."""
    digest = hashlib.sha256(f"{numba.__version__} {numpy.__version__} {extra}".encode())
    for name in sorted(os.listdir(PACKAGE_DIR)):
        if name.endswith(".py"):
            with open(os.path.join(PACKAGE_DIR, name), "rb") as source:
                digest.update(name.encode() + source.read())
    return digest.hexdigest()


class _Cache:
    """Where this process keeps the compiled kernels (folder None: in memory), what it has said about it, and how long
    it has spent compiling them."""
    folder = None
    stamp = None
    announced = False
    compiling_since = None      # when the outermost compilation of a kernel of ours began
    depth = 0
    seconds = 0.0


def cache_folder():
    """The folder this process keeps the compiled kernels in (None: in memory)."""
    return _Cache.folder


def set_up_cache(blas_name):
    """Choose the cache folder for kernels that call `blas_name`; returns it (None: compile in memory)."""
    _Cache.stamp = source_stamp(blas_name)
    _Cache.folder = writable_folder(cache_candidates(), "cpu-kernels-" + _Cache.stamp[:16])
    if _Cache.folder is not None:
        _run_parts.enable_caching()     # made before the folder was known
        _run_steps.enable_caching()
    return _Cache.folder


class _Locator(caching._CacheLocator):
    """Numba's cache locator for this package's functions: the versioned folder, stamped with the package's sources."""

    def __init__(self, py_func, py_file):
        self._py_file, self._lineno = py_file, py_func.__code__.co_firstlineno

    def ensure_cache_path(self):
        os.makedirs(_Cache.folder, exist_ok=True)

    def get_cache_path(self):
        return _Cache.folder

    def get_source_stamp(self):
        return _Cache.stamp

    def get_disambiguator(self):
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file):
        if _Cache.folder is None or os.path.dirname(os.path.abspath(py_file)) != PACKAGE_DIR:
            return None         # another package's function: Numba's own locators decide
        return cls(py_func, py_file)


(getattr(caching, "CacheImpl", None) or caching._CacheImpl)._locator_classes.insert(0, _Locator)   # older name


class _CompileNotice(event.Listener):
    """Says once per process, on stderr, that the CPU kernels are being compiled (and where they will be kept), and
    adds up the time spent compiling them (compile_seconds)."""

    @staticmethod
    def _ours(ev):
        function = getattr(ev.data.get("dispatcher"), "py_func", None)
        return getattr(function, "__module__", "").startswith(__package__ + ".")

    def on_start(self, ev):
        if not self._ours(ev):
            return
        if _Cache.depth == 0:
            _Cache.compiling_since = time.perf_counter()
        _Cache.depth += 1
        if not _Cache.announced:
            _Cache.announced = True
            where = (f"once for this machine: cached in {_Cache.folder}" if _Cache.folder else
                     "in memory: no writable cache folder, so every new process compiles them again")
            print(f"gpudl: compiling the CPU kernels ({where})", file=sys.stderr, flush=True)

    def on_end(self, ev):
        if not self._ours(ev):
            return
        _Cache.depth -= 1
        if _Cache.depth == 0:
            _Cache.seconds += time.perf_counter() - _Cache.compiling_since


def compile_seconds():
    """Seconds this process has spent compiling CPU kernels (0 when every kernel it ran came from the disk cache)."""
    return _Cache.seconds


event.register("numba:compile", _CompileNotice())

_OPTIONS = dict(nogil=True, error_model="numpy")
kernels = []        # every @kernel, for cache_report


def kernel(function):
    """A parallel CPU kernel (prange), compiled on first call for the argument types it gets."""
    dispatcher = numba.njit(parallel=True, cache=_Cache.folder is not None, **_OPTIONS)(function)
    kernels.append(dispatcher)
    return dispatcher


def helper(function):
    """A serial function that kernels call (compiled into them)."""
    return numba.njit(cache=_Cache.folder is not None, **_OPTIONS)(function)


def inline(function):
    """A small function that kernels call per element: inlined into them by Numba, so a loop that calls it still
    vectorizes (a call per element would not)."""
    return numba.njit(inline="always", **_OPTIONS)(function)


@intrinsic
def _call_part(typing_context, address, p, parts, arguments):
    """Whether body(p, parts, *arguments) raised: the body given by the address of its native function, which returns
    Numba's status code (its C entry point would print the error on stderr and return). Its arguments are of the types
    the body was compiled for, and it returns None: Part.run makes sure."""
    def codegen(context, builder, signature, values):
        argument_types = (signature.args[1], signature.args[2]) + tuple(signature.args[3])
        native = context.call_conv.get_function_type(types.none, argument_types)
        body = builder.inttoptr(values[0], native.as_pointer())
        result, error = (cgutils.alloca_once(builder, t.pointee) for t in native.args[:2])
        packed = context.get_arg_packer(argument_types).as_arguments(
            builder, [values[1], values[2]] + cgutils.unpack_tuple(builder, values[3]))
        status = builder.call(body, [result, error] + list(packed))
        return builder.and_(builder.icmp_signed("!=", status, RETCODE_OK),
                            builder.icmp_signed("!=", status, RETCODE_NONE))
    return types.boolean(address, p, parts, arguments), codegen


@kernel
def _run_parts(address, parts, *arguments):
    failed = numpy.zeros(parts, numpy.bool_)       # each part writes its own
    for p in prange(parts):
        failed[p] = _call_part(address, int64(p), parts, arguments)
    count = 0
    for p in range(parts):
        count += failed[p]
    return count


@kernel
def _run_steps(address, steps, parts, *arguments):
    """_run_parts `steps` times, the body told step * parts + p; apart, because the loop around the prange makes
    it compile slower, and most bodies run once."""
    failed = numpy.zeros(parts, numpy.bool_)
    count = 0
    for step in range(steps):
        for p in prange(parts):
            failed[p] = _call_part(address, int64(step * parts + p), parts, arguments)
        for p in range(parts):
            count += failed[p]
        if count:
            break
    return count


def _type_key(argument):
    """What Numba's type of an argument depends on (an array's dtype, dimensions, layout and writability)."""
    if isinstance(argument, numpy.ndarray):
        flags = argument.flags
        return argument.dtype, argument.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable
    return type(argument)


class Part:
    """The body of a parallel kernel for part p of `parts` (its first two arguments, then the kernel's own):
    `body.run(parts, *arguments)` runs it on every part at once, on Numba's threads. With steps=S, the parts run S
    times, each step's once all of the step before have finished (one join a step), and a body's first argument is
    step * parts + p.

    The body compiles on its own, serially, on its first run with these argument types, and the one parallel kernel
    _run_parts calls it through its address: LLVM optimizes it once. Inlined into a prange loop, or called as a
    function Numba links in, a body is optimized again in Numba's gufunc and again in the kernel around it: about
    three times the compiling (RESULTS.md). Two costs: the arguments must not hold tuples (Numba's gufunc takes none
    through *arguments; a window's ints travel as an array, im2col.window_ints), and the body does not get the
    gufunc's no-alias promise, which some loops need to vectorize (max pooling's ran 15 times slower so, and stays a
    prange kernel). An exception inside a body ends its part, and run raises a RuntimeError naming the body once every
    part is done (the exception itself is not kept: call the dispatcher on one part to see it)."""

    def __init__(self, function):
        self.dispatcher = numba.njit(cache=_Cache.folder is not None, **_OPTIONS)(function)
        self.name = f"{function.__module__}.{function.__qualname__}"
        self._addresses = {}
        kernels.append(self.dispatcher)

    def run(self, parts, *arguments, steps=1):
        key = tuple(map(_type_key, arguments))
        address = self._addresses.get(key)
        if address is None:
            signature = (int64, int64) + tuple(numba.typeof(a) for a in arguments)
            self.dispatcher.compile(signature)
            compiled = self.dispatcher.overloads[signature]
            if compiled.signature.return_type != types.none:
                raise TypeError(f"{self.name}: a part body returns nothing, got {compiled.signature.return_type}")
            address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
            self._addresses[key] = address
        failed = _run_parts(address, parts, *arguments) if steps == 1 else \
            _run_steps(address, steps, parts, *arguments)
        if failed:
            raise RuntimeError(f"{self.name}: {failed} of {parts} parts raised an exception, the output is not valid "
                               f"(call {self.name}.dispatcher on one part to see it)")


part = Part     # the decorator, named as kernel, helper and inline are


def cache_report():
    """One line: where the compiled kernels live and how many of them are there (compiled and cached)."""
    if _Cache.folder is None:
        return f"cpu kernels: numba {numba.__version__}; compiled in memory (no writable cache folder)"
    names = {f"{os.path.splitext(os.path.basename(k.py_func.__code__.co_filename))[0]}.{k.py_func.__qualname__}"
             for k in kernels}
    cached = {name.split("-")[0] for name in os.listdir(_Cache.folder) if name.endswith(".nbi")} & names
    return (f"cpu kernels: numba {numba.__version__}; {len(cached)} of {len(names)} compiled and cached in "
            f"{_Cache.folder}" + ("" if len(cached) == len(names) else " (the others compile on first use)"))


# -- threads -------------------------------------------------------------------------------------------------------

thread_setting = None       # a function giving the wanted thread count (gpudl.get_num_threads); None: all cores
_local = threading.local()  # Numba's thread count is set per calling thread: what was last set on this one


def threads_for(work):
    """Set and return the threads for a kernel call over `work` elements: the setting (at most Numba's pool), at most
    one per GRAIN elements of work."""
    wanted = MAX_THREADS if thread_setting is None else min(thread_setting(), MAX_THREADS)
    threads = max(1, min(wanted, work // GRAIN))
    if getattr(_local, "threads", None) != threads:
        numba.set_num_threads(threads)
        _local.threads = threads
    return threads


def lost_in_fork():
    """Whether the kernels cannot run in a process forked from this one: their threads were started, by GNU OpenMP
    (Numba's default threading layer where TBB is not installed), which cannot be used after a fork."""
    try:
        return numba.threading_layer() == "omp"
    except ValueError:          # no thread started yet
        return False


# -- argument checks -----------------------------------------------------------------------------------------------

def check_overflow(what, result, *inputs):
    """NumPy's way under numpy.errstate(over="raise"), which training and prediction run in: FloatingPointError when
    finite inputs gave a result that is not (the kernels' arithmetic sets no NumPy error flag of its own)."""
    if numpy.geterr()["over"] == "raise" and not numpy.isfinite(result).all() and \
            all(numpy.isfinite(a).all() for a in inputs):
        raise FloatingPointError(f"overflow encountered in {what}")


def real_arrays(what, *arrays):
    """The arrays as C-contiguous numpy arrays of one dtype, float32 or float64, or a TypeError naming `what`."""
    dtype = arrays[0].dtype
    if dtype != numpy.float32 and dtype != numpy.float64:
        raise TypeError(f"{what}: arrays must be float32 or float64, got {dtype}")
    for a in arrays:
        if a.dtype != dtype:
            raise TypeError(f"{what}: arrays must share one dtype, got {dtype} and {a.dtype}")
    return [a if a.flags.c_contiguous else numpy.ascontiguousarray(a) for a in arrays]
