"""The obfuscated package: names equal to the released zwc, the array type, the sealed library, the docs.

References: the released mapping's published samples (array -> yitaf, mean -> kocito, linalg -> rfx,
linalg.inv -> quvohe), NumPy itself for every value a renamed function returns, and the sandbox for what
generated code can import."""
import json
import re

import numpy as np
import pytest

from jaxsuite.agents.sandbox import run_python
from jaxsuite.sebench import docs as sedocs
from jaxsuite.sebench.names import NUMPY_LINALG, NUMPY_MAIN, NameMapping, obfuscate_names
from jaxsuite.sebench.package import build_package
from jaxsuite.sebench.tasks import load_package


def test_the_released_names(mapping):
    assert (len(NUMPY_MAIN), len(NUMPY_LINALG)) == (247, 31)
    assert mapping.main["array"] == "yitaf" and mapping.main["mean"] == "kocito"
    assert mapping.subpackage == "rfx" and mapping.sub["inv"] == "quvohe"
    assert mapping.qualified("inv", submodule=True) == "zwc.rfx.quvohe"


def test_names_follow_the_rule_and_never_repeat(mapping):
    names = [*mapping.main.values(), *mapping.sub.values()]
    assert len(set(names)) == len(names) == 278
    for name in names:
        assert 5 <= len(name) <= 7, name
        assert all(c in "bcdfghjklmnpqrstvwxyz" if i % 2 == 0 else c in "aeiou" for i, c in enumerate(name)), name
    # a function in both lists has two names, one per module
    for both in ("trace", "matmul", "cross", "outer", "diagonal", "tensordot"):
        assert mapping.main[both] != mapping.sub[both]


def test_another_library_gets_its_own_names_the_same_way():
    first = obfuscate_names(["loads", "dumps"], seed=7)
    assert first == obfuscate_names(["loads", "dumps"], seed=7)
    assert first.main != obfuscate_names(["loads", "dumps"], seed=8).main
    with pytest.raises(ValueError, match=r"names \['loads'\] more than once"):
        obfuscate_names(["loads", "loads"])


def test_the_mapping_file_round_trips_and_bad_files_are_named(tmp_path, mapping):
    mapping.save(tmp_path / "mapping.json")
    record = json.loads((tmp_path / "mapping.json").read_text())
    assert set(record) >= {"main", "linalg", "main_reverse", "linalg_reverse"}
    assert record["main_reverse"]["yitaf"] == "array"
    assert NameMapping.load(tmp_path / "mapping.json") == mapping
    (tmp_path / "bad.json").write_text('{"main": {}')
    with pytest.raises(ValueError, match=r"bad.json: invalid JSON at line 1"):
        NameMapping.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        NameMapping.load(tmp_path / "missing.json")


def test_renamed_functions_give_numpys_values(zwc, mapping):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5))
    f = lambda name: getattr(zwc, mapping.main[name])     # noqa: E731
    np.testing.assert_allclose(np.asarray(f("mean")(x, axis=0)), np.mean(x, axis=0))
    np.testing.assert_allclose(np.asarray(f("cumsum")(x.tolist())), np.cumsum(x))
    assert f("sum")(x) == pytest.approx(np.sum(x))
    m = x[:, :4]
    np.testing.assert_allclose(np.asarray(getattr(zwc.rfx, mapping.sub["inv"])(m)), np.linalg.inv(m))
    # trapz, gone from NumPy 2.4, answers through trapezoid
    assert f("trapz")([1.0, 2.0, 3.0]) == 4.0


def test_the_array_type_blocks_numpys_methods(zwc, mapping):
    a = getattr(zwc, mapping.main["array"])([[1.0, 2.0], [3.0, 4.0]])
    assert type(a).__name__ == "ZWCArray" and a.shape == (2, 2) and a.ndim == 2 and a.size == 4
    assert a.dtype == np.float64 and np.array_equal(np.asarray(a.T), [[1.0, 3.0], [2.0, 4.0]])
    for method in ("mean", "sum", "reshape", "tolist", "astype", "flatten", "max", "dot"):
        with pytest.raises(AttributeError, match=f"'ZWCArray' object has no attribute '{method}'"):
            getattr(a, method)
    assert repr(a) == "ZWCArray([[1., 2.],\n          [3., 4.]])"
    assert type(a[0]).__name__ == "ZWCArray" and a[0, 1] == 2.0 and type(a[0, 1]) is np.float64
    assert type(a + 1).__name__ == "ZWCArray" and type(1 + a).__name__ == "ZWCArray"
    assert type(np.float64(2.0) * a).__name__ == "ZWCArray"          # numpy's scalar defers to us
    assert np.array_equal(np.asarray(a @ a), np.asarray(a) @ np.asarray(a))
    assert [type(row).__name__ for row in a] == ["ZWCArray", "ZWCArray"]


def test_inputs_are_unwrapped_and_outputs_rewrapped_inside_containers(zwc, mapping):
    f = lambda name: getattr(zwc, mapping.main[name])     # noqa: E731
    a, b = f("array")([1, 2]), f("array")([3])
    joined = f("concatenate")([a, b])                      # ZWCArrays inside a list go in as arrays
    assert type(joined).__name__ == "ZWCArray" and np.array_equal(np.asarray(joined), [1, 2, 3])
    values, counts = f("unique")([3, 1, 3], return_counts=True)      # a named tuple comes back wrapped
    assert type(values).__name__ == type(counts).__name__ == "ZWCArray"
    quotient, remainder = f("divmod")([7, 8], 3)
    assert np.array_equal(np.asarray(quotient), [2, 2]) and type(remainder).__name__ == "ZWCArray"
    grids = f("meshgrid")([1, 2], [3, 4])
    assert all(type(g).__name__ == "ZWCArray" for g in grids)
    u, s, vt = getattr(zwc.rfx, mapping.sub["svd"])([[1.0, 0.0], [0.0, 2.0]])
    assert type(s).__name__ == "ZWCArray"            # our choice: the submodule's results are wrapped too
    runtime = zwc._runtime
    wrapped = runtime._wrap({"k": [np.ones(2), (np.zeros(1),)]})
    assert type(wrapped["k"][0]).__name__ == "ZWCArray" and type(wrapped["k"][1][0]).__name__ == "ZWCArray"
    assert type(runtime._unwrap({"k": wrapped["k"]})["k"][1][0]) is np.ndarray


def test_the_released_submodule_behaviour_is_an_option(tmp_path, mapping):
    folder = build_package(tmp_path / "released", mapping, wrap_submodule=False)
    released = load_package(folder, mapping.package)
    assert type(getattr(released.rfx, mapping.sub["inv"])([[2.0]])) is np.ndarray
    assert type(getattr(released, mapping.main["cumsum"])([1, 2])).__name__ == "ZWCArray"


def test_generated_code_cannot_import_numpy_in_the_sandbox(zwc_dir, mapping):
    """The evaluator's harness seals the library first; after that it is refused in every spelling while the
    package (which imported it) keeps working."""
    path = [str(zwc_dir.parent)]
    for attempt in ("import numpy", "from numpy import mean", "__import__('nu' + 'mpy')",
                    "import importlib; importlib.import_module('numpy.linalg')"):
        program = f"import zwc; zwc._seal()\nprint(zwc.{mapping.main['sum']}([1, 2]))\n{attempt}"
        result = run_python(program, python_path=path)
        assert result.stdout == "3\n" and "ModuleNotFoundError: No module named 'numpy" in result.stderr, attempt


def test_the_rewritten_docs_never_name_numpy_and_read_in_the_new_names(mapping, zwc):
    docs = sedocs.rewrite_docs(mapping)
    assert len(docs) == 278 and not [d.curr_name for d in docs if sedocs.library_mentions(d.rewritten_doc)]
    by_name = {d.original_name: d for d in docs}
    mean = by_name["mean"].rewritten_doc
    assert mean.startswith("zwc.kocito(a, axis=None")
    see_also = mean[mean.index("See Also"):mean.index("Notes")]
    assert f"{mapping.main['average']} : Weighted average" in see_also
    assert ">>> zwc.kocito(a, axis=0)\nZWCArray([2., 3.])" in mean
    inverse = by_name["linalg.inv"].rewritten_doc
    assert inverse.startswith("zwc.rfx.quvohe(a)") and "from zwc.rfx import quvohe" in inverse
    assert "zwc.ZWCArray" in inverse and by_name["linalg.inv"].func_mapping["linalg.inv"] == "quvohe"
    assert by_name["add"].rewritten_doc.startswith(f"zwc.{mapping.main['add']}(x1, x2, /")   # a ufunc's own line
    # the package shows them in help()
    assert getattr(zwc, "kocito").__doc__ == mean
    # a refinement hook that brings the library's name back is refused
    with pytest.raises(ValueError, match="still names the library"):
        sedocs.rewrite_docs(mapping, names=["mean"], refine=lambda d: d.rewritten_doc + " (see numpy)")


def test_the_docs_examples_run_on_the_package(mapping, zwc):
    """The rewritten examples of simple functions, executed line by line on zwc, print what the docs say (lines
    that call an array method, which the package hides, are skipped: the rules keep NumPy's examples whole)."""
    from jaxsuite.sebench.evaluate import outputs_match
    for name in ("cumsum", "diff", "sort", "convolve", "cumprod", "ptp"):
        doc = sedocs.rewrite_doc(name, mapping).rewritten_doc
        lines = doc[doc.index("Examples"):].splitlines()
        namespace, checked = {"zwc": zwc}, 0
        for i, line in enumerate(lines):
            if not line.startswith(">>> ") or "import" in line:
                continue
            source, j = line[4:], i + 1
            while j < len(lines) and lines[j].startswith("..."):     # a statement over several lines
                source += "\n" + lines[j][4:]
                j += 1
            expected = []
            for follow in lines[j:]:
                if not follow.strip() or follow.startswith(">>>"):
                    break
                expected.append(follow)
            try:
                code, is_expression = compile(source, "<doc>", "eval"), True
            except SyntaxError:
                code, is_expression = compile(source, "<doc>", "exec"), False
            try:
                value = eval(code, namespace)
            except AttributeError as e:      # numpy's examples also call array methods, which zwc hides, and
                # functions outside the lists, which the docs name zwc.f as the release does but zwc lacks
                assert re.search(r"'ZWCArray' object|module 'zwc'", str(e)), (name, source)
                break                        # later lines may use what this one would have made
            if not is_expression:
                continue
            if expected and "may vary" not in " ".join(expected) and not re.search(r"\.\.\.|dtype=", " ".join(expected)):
                assert outputs_match(repr(value), "\n".join(expected), 1e-6), (name, source, value, expected)
                checked += 1
        assert checked >= 1, name


def test_api_doc_files_round_trip_and_bad_files_are_named(tmp_path, mapping):
    docs = sedocs.rewrite_docs(mapping, names=["mean", "linalg.inv"])
    sedocs.save_api_docs(tmp_path / "api_doc.jsonl", docs)
    assert sedocs.load_api_docs(tmp_path / "api_doc.jsonl") == docs
    assert {d.curr_name for d in docs} == {"kocito", "rfx.quvohe"}
    (tmp_path / "bad.jsonl").write_text('{"original_name": "mean", "curr_name": "kocito"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: an api doc needs the text fields \['rewritten_doc'\]"):
        sedocs.load_api_docs(tmp_path / "bad.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no api docs"):
        sedocs.load_api_docs(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError, match="do not exist"):
        sedocs.load_api_docs(tmp_path / "none.jsonl")
