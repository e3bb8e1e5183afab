"""jaxsuite: JAX/Flax reimplementations of recent Tsinghua/OpenBMB training systems.

Install for use:        pip install -e .
Install for the tests:  pip install -e .[test]   (adds PyTorch/transformers as the parity reference)
"""
from setuptools import find_packages, setup

setup(
    name="jaxsuite",
    version="0.1.0",
    description="JAX/Flax training systems (HypeNet/HALO, LatentChem, CPMobius, ...) on TPU, GPU and CPU",
    python_requires=">=3.11",
    packages=find_packages(include=["jaxsuite", "jaxsuite.*", "kernels_pallas", "kernels_pallas.*"]),
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "grain>=0.2.10",
        "ml-collections>=1.0",
        "numpy>=1.26",
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
        "scipy>=1.11",              # forecasting: sparse M5 aggregation, Gaussian quantiles
        "numpyro>=0.15",            # forecasting: the Bayesian structural (Prophet-style) baseline
        "sympy>=1.12",              # RL math environment: checking answers for mathematical equivalence
        "rdkit>=2024.3",            # LatentChem: ground truth for the chemistry tasks (parsing, properties, edits)
    ],
    extras_require={
        # torch is pinned to the CPU wheel this project's machines carry; transformers is the parity oracle.
        "test": [
            "torch==2.13.0",
            "transformers>=5.0",
            "pytest>=8",
            "pytest-xdist>=3.5",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
    },
)
