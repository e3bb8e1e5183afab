"""Random names for a library's functions: SE-Bench's obfuscation, reproducible name for name.

    mapping = obfuscate_names(NUMPY_MAIN, NUMPY_LINALG, seed=42)
    mapping.main["array"], mapping.sub["inv"]          # -> "yitaf", "quvohe": the released zwc package's names

The released algorithm (thunlp/SE-Bench): one `random.Random(seed)`; for each function, in list order, draw a
length `randint(5, 7)` and build the name letter by letter, a consonant at even positions and a vowel at odd
ones; a name already used is thrown away and drawn again (a new length too). The main list is named first,
then the submodule's with the SAME generator, so a function in both lists (trace, matmul, cross, ...) gets two
names. With NumPy's lists below and seed 42 the names equal the released `zwc` package's, which the official
task files reference; any other library gets its own names the same way.
"""
from __future__ import annotations

import dataclasses
import json
import random
from typing import Sequence

from etils import epath

from jaxsuite.core import files

CONSONANTS = "bcdfghjklmnpqrstvwxyz"
VOWELS = "aeiou"
RELEASED_SEED = 42

# NumPy's functions in the released order (SE-Bench's function lists). Order matters: it fixes every name.
NUMPY_MAIN: tuple[str, ...] = tuple("""
abs absolute acos acosh add all allclose amax amin any arange arccos arccosh arcsin arcsinh arctan arctan2
arctanh argmax argmin argpartition argsort argwhere around array array2string array_equal array_equiv
array_repr array_str asanyarray asarray ascontiguousarray asfortranarray asin asinh astype atan atan2 atanh
atleast_1d atleast_2d atleast_3d average base_repr binary_repr bincount bitwise_and bitwise_count
bitwise_invert bitwise_left_shift bitwise_not bitwise_or bitwise_right_shift bitwise_xor block
broadcast_arrays broadcast_to cbrt ceil choose clip compress concatenate conj conjugate convolve copy copysign
copyto corrcoef correlate cos cosh count_nonzero cov cross cumprod cumsum deg2rad degrees delete diag diagflat
diagonal diff digitize divide divmod dot empty empty_like equal exp exp2 expand_dims expm1 extract eye fabs
flip floor floor_divide fmax fmin fmod frexp full full_like gcd geomspace gradient greater greater_equal
heaviside histogram hstack hypot identity imag inner insert interp intersect1d invert isclose isfinite isinf
isnan isreal ix_ kron lcm ldexp left_shift less less_equal lexsort linspace log log1p log2 log10 logaddexp
logaddexp2 logical_and logical_not logical_or logical_xor logspace matmul max maximum mean median meshgrid min
minimum mod modf moveaxis multiply nan_to_num negative nextafter nonzero not_equal ones ones_like outer pad
partition percentile permute_dims piecewise place polyfit polyval positive pow power prod ptp put putmask
quantile rad2deg radians ravel real reciprocal remainder repeat reshape resize right_shift rint roll rollaxis
roots rot90 round searchsorted select shape sign signbit sin sinc sinh size sort sort_complex spacing split
sqrt square squeeze stack std subtract sum swapaxes take tan tanh tensordot tile trace transpose trapz tri
tril triu true_divide trunc union1d unique unravel_index unwrap var vdot vectorize vstack where zeros
zeros_like
""".split())
NUMPY_LINALG: tuple[str, ...] = tuple("""
matrix_power solve tensorsolve tensorinv inv cholesky eigvals eigvalsh pinv slogdet det svd svdvals eig eigh
lstsq norm qr cond matrix_rank multi_dot trace diagonal cross outer tensordot matmul matrix_transpose
matrix_norm vector_norm vecdot
""".split())

# Listed functions this NumPy has under another name (numpy 2.4 removed trapz): {"main"|"sub": {listed: actual}}.
NUMPY_ALIASES = {"main": {"trapz": "trapezoid"}, "sub": {}}


@dataclasses.dataclass(frozen=True)
class NameMapping:
    """Original name -> new name for the main module's functions and the submodule's, and both reversed.

    Saved as the released mapping file: {"main", "linalg", "main_reverse", "linalg_reverse"} (the submodule's
    lists keep the key "linalg" whatever the library, so the file reads like the release's)."""
    main: dict[str, str]
    sub: dict[str, str]
    package: str = "zwc"
    subpackage: str = "rfx"

    @property
    def main_reverse(self) -> dict[str, str]:
        return {v: k for k, v in self.main.items()}

    @property
    def sub_reverse(self) -> dict[str, str]:
        return {v: k for k, v in self.sub.items()}

    def qualified(self, name: str, *, submodule: bool = False) -> str:
        """'mean' -> 'zwc.kocito'; ('inv', submodule=True) -> 'zwc.rfx.quvohe'."""
        return (f"{self.package}.{self.subpackage}.{self.sub[name]}" if submodule
                else f"{self.package}.{self.main[name]}")

    def to_json(self) -> dict:
        return {"main": self.main, "linalg": self.sub, "main_reverse": self.main_reverse,
                "linalg_reverse": self.sub_reverse, "package": self.package, "subpackage": self.subpackage}

    @classmethod
    def from_json(cls, record: dict, *, where: str = "mapping") -> "NameMapping":
        missing = [k for k in ("main", "linalg") if not isinstance(record.get(k), dict)]
        if missing:
            raise ValueError(f"{where}: not a name mapping (needs the objects {missing})")
        return cls(main=dict(record["main"]), sub=dict(record["linalg"]),
                   package=record.get("package", "zwc"), subpackage=record.get("subpackage", "rfx"))

    def save(self, path) -> None:
        files.atomic_write_text(epath.Path(path), json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path) -> "NameMapping":
        record = files.read_json_object(path, missing=f"name mapping {path} does not exist")
        return cls.from_json(record, where=str(path))


def _draw_name(rng: random.Random) -> str:
    length = rng.randint(5, 7)
    return "".join(rng.choice(CONSONANTS) if i % 2 == 0 else rng.choice(VOWELS) for i in range(length))


def obfuscate_names(main: Sequence[str], sub: Sequence[str] = (), *, seed: int = RELEASED_SEED,
                    package: str = "zwc", subpackage: str = "rfx") -> NameMapping:
    """New names for `main` then `sub`, drawn in that order from one generator (see the module docstring)."""
    for label, names in (("main", main), ("submodule", sub)):
        repeats = sorted({n for n in names if list(names).count(n) > 1})
        if repeats:
            raise ValueError(f"the {label} function list names {repeats} more than once")
    rng, used = random.Random(seed), set()

    def fresh() -> str:
        while (name := _draw_name(rng)) in used:
            pass
        used.add(name)
        return name

    main_map = {name: fresh() for name in main}
    sub_map = {name: fresh() for name in sub}
    return NameMapping(main=main_map, sub=sub_map, package=package, subpackage=subpackage)


def numpy_mapping() -> NameMapping:
    """The released zwc names for NumPy."""
    return obfuscate_names(NUMPY_MAIN, NUMPY_LINALG, seed=RELEASED_SEED)
