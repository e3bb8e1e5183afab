"""Any model on the public optimisation-modelling benchmarks (OptiBench, MAMO Easy/Complex, NL4Opt), judged by
the execution check.

Commands:
  python -m jaxsuite.launch --config configs/evoopt_bench.py --workdir runs/evoopt_bench \
      --config.model.endpoint=http://localhost:8000/v1 --config.model.name=qwen2.5-7b-instruct
  python -m jaxsuite.launch --config configs/evoopt_bench.py:local --workdir runs/evoopt_bench \
      --config.model.folder=path/to/hf_folder

The files are read from `data_dir` (../shared/data/optbench beside a checkout) or `files.<benchmark>`; NL4Opt's
references are its structured models solved here (continuous variables). Every answer's program runs in the
sandbox (30 s), as written and after repair, judged by ORLM's rule unless `rules.<benchmark>` says "mamo" or
"strict". `limit` > 0 takes the first problems of each file. Nothing is downloaded. See docs/evoopt.md.
"""
import ml_collections

VARIANTS = {"endpoint": "a model behind an OpenAI-compatible endpoint (set model.endpoint and model.name)",
            "local": "a jaxsuite LM in-process from a Hugging Face folder (set model.folder)"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = (arg or "endpoint").lower()
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    c = ml_collections.ConfigDict()
    c.job = "jaxsuite.optmodel.bench_eval:run"
    c.seed = 0
    c.benchmarks = ["nl4opt", "mamo_easy", "mamo_complex", "optibench"]
    c.data_dir = "../shared/data/optbench"
    c.files = ml_collections.ConfigDict(dict(nl4opt="", mamo_easy="", mamo_complex="", optibench=""))
    c.rules = ml_collections.ConfigDict(dict(nl4opt="orlm", mamo_easy="orlm", mamo_complex="orlm", optibench="orlm"))
    c.limit = 0
    # endpoint: an OpenAI-compatible /v1 URL; api_key_env names the environment variable holding the key
    c.model = ml_collections.ConfigDict(dict(endpoint="", name="", api_key_env="", timeout=600.0, folder=""))
    c.eval = ml_collections.ConfigDict(dict(k=1, temperature=0.0, max_new_tokens=1536, batch_size=16, workers=2,
                                            rule="orlm", timeout=30.0, thinking=False))
    return c
