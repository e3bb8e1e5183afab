"""The runtime of an obfuscated package: copied into it as `_runtime.py` by jaxsuite.sebench.package.

It needs only the standard library and the library it renames (NumPy for zwc), never jaxsuite: the package
is imported by generated code inside the sandbox, where jaxsuite is not on the path. `_package.json` beside it
holds what to build: the library, its submodule, the name maps, the library's folder and the options.

What the package gives generated code:
  - each mapped function under its new name, calling the library's function with every `ZWCArray` argument
    unwrapped (also inside tuples, lists and dicts) and every returned array wrapped again (also inside
    tuples, named tuples, lists and dicts);
  - the library's constants and scalar types (pi, inf, float64, ...) under their own names;
  - `ZWCArray`, an array that keeps only shape, dtype, size, ndim and T, indexing, iteration, arithmetic and
    comparisons: the library's methods (`.mean()`, `.reshape()`, `.tolist()`, ...) raise AttributeError, so a
    solution has to go through the package's functions;
  - `_seal()`, which the evaluator's harness calls first: from then on the library itself cannot be imported
    by the program (`import numpy`, `__import__("numpy")`, `importlib.import_module("numpy")` raise
    ModuleNotFoundError), while the package and the library's own modules import freely. This holds a model
    to the task; it is no security boundary (the sandbox is that).
"""
import builtins
import functools
import importlib
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "_package.json")) as _f:
    _CONFIG = json.load(_f)


def _import_library():
    """The renamed library; where it is not on the path (an interpreter run with -S, a virtualenv without it),
    from the folder recorded at build time, which leaves the path again at once."""
    name = _CONFIG["library"]
    if name in sys.modules:
        return sys.modules[name]
    folder = _CONFIG.get("library_path")
    added = bool(folder) and folder not in sys.path
    if added:
        sys.path.append(folder)
    try:
        return importlib.import_module(name)
    finally:
        if added:
            sys.path.remove(folder)


_lib = _import_library()
_ndarray = getattr(_lib, "ndarray", None)


class ZWCArray:
    """An array of the package. Only shape, dtype, size, ndim and T are attributes; everything else goes
    through the package's functions."""
    __slots__ = ("_data",)
    __array_ufunc__ = None          # a library scalar on the left defers to our reflected operators
    __hash__ = None

    def __init__(self, data):
        self._data = _lib.asarray(_unwrap(data))

    def __array__(self, dtype=None, copy=None):
        return self._data if dtype is None else self._data.astype(dtype)

    shape = property(lambda self: self._data.shape)
    dtype = property(lambda self: self._data.dtype)
    size = property(lambda self: self._data.size)
    ndim = property(lambda self: self._data.ndim)
    T = property(lambda self: ZWCArray(self._data.T))

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return (_wrap(item) for item in self._data)

    def __getitem__(self, index):
        return _wrap(self._data[_unwrap(index)])

    def __setitem__(self, index, value):
        self._data[_unwrap(index)] = _unwrap(value)

    def __contains__(self, value):
        return _unwrap(value) in self._data

    def __repr__(self):
        text = repr(self._data)
        if not text.startswith("array("):
            return text
        # numpy indents continuation lines under "array("; keep them under "ZWCArray(".
        return "ZWCArray(" + text[len("array("):].replace("\n" + " " * 6, "\n" + " " * 9)

    def __str__(self):
        return str(self._data)

    def __bool__(self):
        return bool(self._data)

    def __int__(self):
        return int(self._data)

    def __float__(self):
        return float(self._data)

    def __complex__(self):
        return complex(self._data)

    def __index__(self):
        return self._data.__index__()

    def __format__(self, spec):
        return format(self._data.item() if self._data.ndim == 0 else self._data, spec)


def _operator(name):
    def apply(self, *args):
        return _wrap(getattr(self._data, name)(*(_unwrap(a) for a in args)))
    apply.__name__ = name
    return apply


for _name in ("add sub mul truediv floordiv mod pow matmul and or xor lshift rshift divmod".split()):
    for _form in (f"__{_name}__", f"__r{_name}__"):
        setattr(ZWCArray, _form, _operator(_form))
for _form in ("__lt__ __le__ __eq__ __ne__ __gt__ __ge__ __neg__ __pos__ __abs__ __invert__ "
              "__round__".split()):
    setattr(ZWCArray, _form, _operator(_form))


def _unwrap(value):
    if isinstance(value, ZWCArray):
        return value._data
    if isinstance(value, tuple):
        items = [_unwrap(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value):
    if _ndarray is not None and isinstance(value, _ndarray):
        return ZWCArray(value)
    if isinstance(value, tuple):
        items = [_wrap(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _wrap(v) for k, v in value.items()}
    if callable(value) and type(value).__module__.split(".")[0] == _CONFIG["library"]:
        return _wrapped_function(value, getattr(value, "__name__", "function"))   # numpy.vectorize and the like
    return value


def _wrapped_function(function, new_name, wrap_result=True):
    @functools.wraps(function, assigned=())
    def call(*args, **kwargs):
        result = function(*_unwrap(list(args)), **_unwrap(kwargs))
        return _wrap(result) if wrap_result else result
    call.__name__ = call.__qualname__ = new_name
    return call


def _missing(original, new_name):
    def call(*args, **kwargs):
        raise AttributeError(f"{_CONFIG['package']}.{new_name} is not available with this installation")
    call.__name__ = new_name
    return call


def _build(namespace, part):
    """Fills a module's namespace: part "main" (the package) or "sub" (its submodule)."""
    library = _lib if part == "main" else importlib.import_module(f"{_CONFIG['library']}.{_CONFIG['submodule']}")
    mapping = _CONFIG[part]
    wrap = _CONFIG["wrap_arrays"] and (part == "main" or _CONFIG["wrap_submodule"])
    aliases = _CONFIG.get("aliases", {}).get(part, {})
    docs = {}
    docs_path = os.path.join(_HERE, "_docs.json")
    if os.path.exists(docs_path):
        with open(docs_path) as f:
            docs = json.load(f).get(part, {})
    for original, new_name in mapping.items():
        target = getattr(library, original, None) or getattr(library, aliases.get(original, ""), None)
        function = (_missing(original, new_name) if target is None
                    else _wrapped_function(target, new_name, wrap_result=wrap) if callable(target)
                    else target)
        if callable(function):
            function.__doc__ = docs.get(new_name)
            function.__module__ = namespace["__name__"]
        namespace[new_name] = function
    namespace["__all__"] = sorted(mapping.values())
    if part == "main":
        for name in _CONFIG.get("passthrough", []):       # constants and scalar types, under their own names
            namespace[name] = getattr(_lib, name)
        namespace["ZWCArray"] = ZWCArray
        ZWCArray.__module__ = namespace["__name__"]
        namespace["__all__"].append("ZWCArray")


def _trusted(importer):
    top = (importer or "").split(".")[0]
    return top in (_CONFIG["package"], _CONFIG["library"])


def _seal():
    """From now on the program cannot import the renamed library (see the module docstring)."""
    if getattr(builtins.__import__, "_sealed", False):
        return
    blocked = _CONFIG["library"]
    original_import, original_import_module = builtins.__import__, importlib.import_module

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name.split(".")[0] == blocked and not _trusted((globals or {}).get("__name__")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return original_import(name, globals, locals, fromlist, level)

    def guarded_import_module(name, package=None):
        if name.split(".")[0] == blocked and not _trusted(sys._getframe(1).f_globals.get("__name__")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return original_import_module(name, package)

    guarded_import._sealed = True
    builtins.__import__ = guarded_import
    importlib.import_module = guarded_import_module
