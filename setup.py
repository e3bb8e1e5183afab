"""jaxsuite: JAX/Flax reimplementations of recent Tsinghua/OpenBMB training systems.

Install the core (the foundation, pre-training and HALO, the main job):   pip install -e .
Add a wing's heavy dependency:        pip install -e ".[chem]"   (or forecast, rl, agents, opt, data; all = every wing)
Install for the tests:                pip install -e ".[test]"   (every wing + PyTorch/transformers as the
                                                                  parity reference + pytest + import-linter)

A wing used without its extra fails with one line naming it (jaxsuite/core/extras.py), e.g.
    ImportError: jaxsuite.latent (LatentChem) needs rdkit: pip install 'jaxsuite[chem]'
"""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "grain>=0.2.10",
    "ml-collections>=1.0",
    "etils[epath]>=1.5",        # workdir I/O: local paths and gs:// alike
    "numpy>=1.26",
    "scipy>=1.11",              # jax needs it anyway; forecasting metrics and the RL core's BLEU clustering use it
    "safetensors>=0.4",
    "huggingface_hub>=0.30",
    "tokenizers>=0.20",
    "sentencepiece>=0.2",
    "tensorflow-datasets>=4.9.8",
    "array-record>=0.7",
    "importlib_resources>=6",   # tensorflow-datasets builders import it even on Python >= 3.9
    "pyarrow>=15",
    "matplotlib>=3.8",
    "tqdm>=4.66",
]

# One extra per wing whose dependency is heavy and used nowhere else. The `extra-*` contracts of
# .importlinter check that each package is imported by its wing only; tests/core/test_extras.py checks that
# every `require(..., extra=...)` in jaxsuite names an extra listed here that installs that package.
WING_EXTRAS = {
    "chem": ["rdkit>=2024.3"],          # LatentChem: ground truth for the chemistry tasks (parsing, properties, edits)
    "forecast": ["numpyro>=0.15"],      # forecasting: the Bayesian structural (Prophet-style) baseline
    "rl": ["sympy>=1.12"],              # RL math environment: checking answers for mathematical equivalence
    # the agent runtime: json5 reads the lenient JSON models write in tool calls; bm25s is a maintained sparse-
    # matrix BM25 that saves and loads its index (faster and smaller than an index of our own); jinja2 renders
    # a tokenizer's own chat template as transformers does, without needing transformers
    # fastapi + uvicorn serve the OpenAI-compatible API (python -m jaxsuite.serve); httpx drives any such endpoint
    "agents": ["json5>=0.9", "bm25s>=0.2", "jinja2>=3.1.6", "fastapi>=0.110", "uvicorn>=0.29", "httpx>=0.27"],
    # EvoOpt-LLM: cvxpy is the modelling language of the reference programs (HiGHS through highspy as its
    # solver); highspy also reads LP files into the structured form; pyscipopt (SCIP) is the second, independent
    # solver the generated optima are checked with and the source of the GNN's solution pools; pulp (with its
    # bundled CBC) is one more API whose programs the execution check must read
    "opt": ["cvxpy>=1.5", "highspy>=1.7", "pyscipopt>=5.0", "pulp>=2.8"],
    # tiered data management: datatrove is the pipeline engine (readers, writers, exact and MinHash dedup, and
    # executors for a local pool, Slurm and Ray with resumable sharded tasks), its processing extra brings
    # trafilatura and inscriptis for HTML extraction; orjson is what its JSON-lines reader needs;
    # lxml_html_clean is the part of lxml that trafilatura 1.x's justext imports but lxml >= 5.2 ships separately;
    # py3langid is language identification with its model inside the wheel (datatrove's fastText filter would
    # download lid.176 from the hub, which these machines cannot)
    "data": ["datatrove[processing]>=0.10,<0.11", "orjson>=3.9", "lxml_html_clean>=0.4", "py3langid>=0.3"],
}
ALL = sorted({req for reqs in WING_EXTRAS.values() for req in reqs})

# Deviceless ahead-of-time compiles for Cloud TPU and NVIDIA GPU targets from any machine (memory fit, kernel
# compilation): libtpu, which jax[tpu] pins to the jax release it was built with, and the CUDA PJRT plugin alone
# (its compiler needs no CUDA libraries, driver or GPU; jax[cuda12] would add ~3 GB of CUDA runtime that only a
# GPU run uses). Not a wing: a tool, also in the tests.
AOT = ["jax[tpu]==0.10.2", "jax-cuda12-plugin==0.10.2"]

# torch is pinned to the CPU wheel this project's machines carry; transformers is the parity oracle.
TEST_TOOLS = [
    "torch==2.13.0",
    "transformers>=5.0",
    "pytest>=8",
    "pytest-xdist>=3.5",
    "nbclient>=0.10",
    "nbformat>=5.10",
    "ipykernel>=6.29",
    "import-linter>=2.12",              # the floors: .importlinter, checked by tests/test_import_contracts.py
    "openai>=1.40",                     # the official client: the server's tests talk to it as users' code does
    "peft>=0.17",                       # Hugging Face's adapters: the reference jaxsuite's LoRA folders round-trip with
]

setup(
    name="jaxsuite",
    version="0.1.0",
    description="JAX/Flax training systems (HypeNet/HALO, LatentChem, CPMobius, ...) on TPU, GPU and CPU",
    python_requires=">=3.11",
    # configs/ ships inside the package as jaxsuite.configs, so an install outside a checkout (pip install
    # git+..., Colab) resolves `--config configs/halo_tiny.py` (jaxsuite.core.config_utils.resolve_config_path)
    packages=find_packages(include=["jaxsuite", "jaxsuite.*", "kernels_pallas", "kernels_pallas.*"])
    + ["jaxsuite.configs"],
    package_dir={"jaxsuite.configs": "configs"},
    install_requires=CORE,
    extras_require={**WING_EXTRAS, "all": ALL, "aot": AOT, "test": ALL + AOT + TEST_TOOLS},
)
