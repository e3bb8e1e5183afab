"""Suite-wide test set-up, shared by every folder under tests/.

- The environment: 8 forced CPU devices for the mesh tests, offline Hugging Face, no tokenizer threads, and a
  persistent compilation cache for the run, removed when the run ends. XLA_FLAGS must be set before JAX is
  imported anywhere, so it happens at import of this conftest.
- The `accelerator` marker's skip on CPU-only machines (the markers themselves are registered in pytest.ini).
- `hf_checkpoints(name)`: tiny random transformers checkpoints (Qwen3 / Qwen2 / Llama), each built and saved once
  per session. The fixture skips its test cleanly where torch or transformers is not installed, so the core
  suite runs without them.
- `token_ids`: a fixed [2, 12] batch of ids inside the tiny vocabulary.
- `check_png`: the assertion every plot test makes (a PNG that decodes, has the expected size, and is not blank).
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded in tests
# One persistent XLA compilation cache for this run, shared by both xdist workers and every subprocess they start
# (notebook kernels, multi-process and launcher tests): many tests compile the same tiny programs, and on 2 cores
# compiling is most of the suite's time. A fresh folder per run (the controller makes it before the workers
# start, and they inherit it), so no test can pass on a program compiled by an earlier checkout.
# The process that makes the folder removes it when the run ends (pytest_unconfigure below): ~110 MB per full run
# would otherwise pile up in the temp folder.
_OWN_XLA_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile
    _OWN_XLA_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxsuite-tests-xla-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import copy  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxsuite.testing import randomize_torch_parameters  # noqa: E402


def pytest_unconfigure(config):
    if _OWN_XLA_CACHE is not None:         # only the controller made it; its xdist workers have ended by now
        import shutil
        shutil.rmtree(_OWN_XLA_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    import jax
    if jax.default_backend() != "cpu":
        return
    skip = pytest.mark.skip(reason="needs a GPU or TPU")
    for item in items:
        if "accelerator" in item.keywords:
            item.add_marker(skip)


# --- tiny random Hugging Face checkpoints ---------------------------------------------------------------------------
# Shapes are deliberately awkward: head_dim 32 != hidden 64 / 4 heads, and 2 KV heads (GQA). Every parameter,
# including norms and biases, is randomised, so a swapped or mis-transposed tensor cannot hide behind an identity
# initialisation.
TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6, max_position_embeddings=128)

LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}

# name -> (transformers config class name, config kwargs on top of TINY)
SPECS = {
    "qwen3_tied": ("Qwen3Config", dict(tie_word_embeddings=True, rope_theta=1e6)),
    "qwen3_untied": ("Qwen3Config", dict(tie_word_embeddings=False, rope_theta=1e6)),
    "qwen2_bias": ("Qwen2Config", dict(tie_word_embeddings=False, rope_theta=1e6)),
    "llama": ("LlamaConfig", dict(tie_word_embeddings=False, rope_theta=10000.0)),
    "llama_rope3": ("LlamaConfig", dict(tie_word_embeddings=False, rope_parameters=LLAMA3_ROPE)),
    # dynamic NTK only acts beyond max_position_embeddings: 8 < the 12-token test sequences
    "llama_dynamic": ("LlamaConfig", dict(tie_word_embeddings=True, max_position_embeddings=8,
                                          rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0,
                                                           "factor": 2.0})),
    # HALO's teacher: 3 layers, so a hybrid keeps attention in the middle one and converts both neighbours
    "qwen3_3layers": ("Qwen3Config", dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                          head_dim=8, tie_word_embeddings=True, rope_theta=1e6)),
    # the quickstart notebook's model: a vocabulary past the byte tokenizer's 259 ids, and its special ids
    "qwen3_notebook": ("Qwen3Config", dict(vocab_size=300, head_dim=16, tie_word_embeddings=True, rope_theta=1e6,
                                           bos_token_id=1, eos_token_id=2, pad_token_id=0)),
}


def build_hf_model(name: str, seed: int = 0):
    """A transformers CausalLM in float32 eval mode with every parameter randomised."""
    import torch
    import transformers

    cls_name, extra = SPECS[name]
    kwargs = {**TINY, **extra}
    if "rope_parameters" in kwargs:
        kwargs.pop("rope_theta", None)
    config = getattr(transformers, cls_name)(**kwargs, attn_implementation="eager")
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize_torch_parameters(model)
    return model.eval()


class Checkpoints:
    """Lazily builds and saves each named checkpoint once; `checkpoints(name, **save_kwargs)` returns
    (folder, torch model). save_kwargs go to save_pretrained (e.g. max_shard_size), except `dtype`, which casts
    a copy of the float32 model before saving it."""

    def __init__(self, root):
        self.root = root
        self._made: dict[str, tuple[str, object]] = {}

    def __call__(self, name: str, **save_kwargs):
        key = name + "".join(f"-{k}={v}" for k, v in sorted(save_kwargs.items()))
        if key not in self._made:
            model = build_hf_model(name)
            folder = os.path.join(self.root, key)
            to_save = model
            if "dtype" in save_kwargs:
                to_save = copy.deepcopy(model).to(save_kwargs.pop("dtype"))
            to_save.save_pretrained(folder, **save_kwargs)
            self._made[key] = (folder, model)
        return self._made[key]


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return Checkpoints(str(tmp_path_factory.mktemp("hf_ckpts")))


@pytest.fixture(scope="session")
def token_ids():
    return np.random.default_rng(0).integers(0, TINY["vocab_size"], size=(2, 12)).astype(np.int32)


# --- plots -----------------------------------------------------------------------------------------------------------
def assert_png(path, size: tuple[int, int] | None = None, *, coloured: bool = True):
    """`path` is a PNG that decodes, is `size` = (width, height) pixels when given, and shows data: a blank canvas
    has a single colour, and an empty frame has only grey ink (axes, ticks, text), while matplotlib draws lines,
    markers and bars in colour. `coloured=False` for a chart whose data may all be zero (bars of height 0)."""
    from PIL import Image

    path = os.fspath(path)
    assert os.path.isfile(path), f"{path} was not written"
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path} is a {image.format}, not a PNG"
        if size is not None:
            assert image.size == tuple(size), f"{path} is {image.size} pixels, expected {tuple(size)}"
        pixels = np.asarray(image.convert("RGB"))                                # [H, W, 3]
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 16, f"{path} is blank ({len(colours)} colours)"
    # a plot is mostly background with some ink: less than 1% non-background pixels is an empty frame
    background = np.all(pixels == pixels[0, 0], axis=-1)
    assert (~background).mean() > 0.01, f"{path} has almost nothing drawn on it"
    spread = pixels.max(-1).astype(int) - pixels.min(-1)                       # [H, W]: 0 for greys
    assert not coloured or (spread > 60).mean() > 1e-3, f"{path} has no coloured pixels: axes without data"


@pytest.fixture(scope="session")
def check_png():
    """The plot assertion as a fixture, so any folder's tests can use it without importing this conftest."""
    return assert_png


# --- a bucket that needs no network ------------------------------------------------------------------------------
@pytest.fixture
def fake_bucket():
    """A `gs://` URL served by an in-memory fsspec filesystem: etils.epath sends gs:// paths to fsspec's "gcs"
    implementation, which this fixture replaces for the test's duration. What is tested is that the code goes
    through epath for every byte (a local `open` or `os.path` call on a gs:// URL fails), not GCS itself."""
    import sys
    import uuid

    import fsspec
    from etils.epath import backend
    from fsspec.implementations.memory import MemoryFileSystem

    class InMemoryBucket(MemoryFileSystem):
        protocol = ("gs", "gcs")
        root_marker = ""

        def __init__(self, *args, finalize_on_close=None, **kwargs):   # a gcsfs option epath passes
            super().__init__(*args, **kwargs)

    saved = {name: fsspec.registry.get(name) for name in ("gs", "gcs")}
    for name in saved:
        fsspec.register_implementation(name, InMemoryBucket, clobber=True)
    backend.fsspec_backend._get_filesystem.cache_clear()
    try:
        yield f"gs://jaxsuite-test/{uuid.uuid4().hex[:8]}"
    finally:
        InMemoryBucket.store.clear()
        InMemoryBucket.pseudo_dirs.clear()
        InMemoryBucket.pseudo_dirs.append("")
        registry = sys.modules["fsspec.registry"]._registry   # the writable table behind fsspec.registry
        for name, cls in saved.items():
            registry.pop(name, None) if cls is None else registry.__setitem__(name, cls)
        backend.fsspec_backend._get_filesystem.cache_clear()
