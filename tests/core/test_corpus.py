"""jaxsuite.core.corpus: the stdlib corpus listing and the synthetic passkey documents, and the floor that lets
the tokenizer and the data pipeline both use them: the corpus imports nothing of jaxsuite or jax, and the
tokenizer does not import the data pipeline."""
import re
import subprocess
import sys

from jaxsuite.core import corpus, data


def test_stdlib_corpus_listing_is_deterministic_with_disjoint_eval_split():
    files = corpus.stdlib_files()
    assert len(files) > 100 and files == corpus.stdlib_files()
    root = corpus.stdlib_root()
    rels = [p.relative_to(root).as_posix() for p in files]
    assert rels == sorted(rels) and all(r.endswith(".py") for r in rels)
    assert not any(r.split("/")[0] in ("test", "idlelib", "site-packages") or "/test/" in r for r in rels)
    assert "os.py" in rels and "json/decoder.py" in rels
    train, ev = corpus.stdlib_files("train"), corpus.stdlib_files("eval")
    assert ev and not set(train) & set(ev) and sorted(train + ev) == sorted(files)
    assert len(data.open_source("stdlib:eval")) == len(ev)


def test_passkey_source_reads_the_corpus_documents():
    source = data.open_source("passkey:3:0:7")               # 3 documents, no filler, seed 7
    assert [source[i] for i in range(3)] == [corpus.passkey_document(7, i, max_filler_sentences=0)
                                             for i in range(3)]
    key = re.search(r"The pass key is (\d+)\.", source[0]).group(1)
    assert source[0] == (f"The pass key is {key}. Remember it. {key} is the pass key. "
                         f"What is the pass key? The pass key is {key}.")


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    return set(out.stdout.split())


def test_the_corpus_and_the_tokenizer_stay_below_the_data_pipeline():
    loaded = _modules_after("import jaxsuite.core.corpus")
    assert "jax" not in loaded and not {m for m in loaded if m.startswith("jaxsuite.") and m not in
                                        ("jaxsuite.core", "jaxsuite.core.corpus")}
    loaded = _modules_after("import jaxsuite.core.tokenizer")
    assert "jaxsuite.core.data" not in loaded and "grain" not in loaded
