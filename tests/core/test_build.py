"""jaxsuite.core.build (mesh and rules, tokenizer, datasets, the vocabulary check, tokenizer export) and the
config blocks every wing shares (jaxsuite.core.config_utils.train_block / data_block): one shape of
`config.train` and one place for the tokenizer across all configs."""
import glob
import os
import re

import jax
import ml_collections
import numpy as np
import pytest

from jaxsuite.core import build
from jaxsuite.core.config_utils import DATA_DEFAULTS, TRAIN_DEFAULTS, ConfigError, data_block, load_config, \
    train_block
from jaxsuite.core.sharding import DEFAULT_RULES
from jaxsuite.core.tokenizer import ByteTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _lm_config(**data):
    c = ml_collections.ConfigDict()
    c.mesh = dict(data=-1, fsdp=2, tensor=1)
    c.sharding_rules = [list(r) for r in DEFAULT_RULES]
    c.tokenizer = "byte"
    c.data = data_block(**data)
    return c


def test_mesh_over_a_given_device_list():
    config = _lm_config()
    devices = jax.devices()[2:6]                       # 4 of the 8 forced CPU devices, not the first ones
    mesh, rules = build.mesh_and_rules(config, devices)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 1}
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in devices)
    assert dict(rules)["embed"] == "fsdp" and dict(rules)["act_batch"] == ("data", "fsdp")
    full, _ = build.mesh_and_rules(config)             # default: every device
    assert full.devices.size == jax.device_count()


@pytest.mark.parametrize("mesh, n, advice", [
    (dict(data=-1, fsdp=8, tensor=1), 4, "--config.mesh.data=-1 --config.mesh.fsdp=4 --config.mesh.tensor=1"),
    (dict(data=-1, fsdp=1, tensor=3), 2, "--config.mesh.data=-1 --config.mesh.fsdp=1 --config.mesh.tensor=2"),
    (dict(data=2, fsdp=4, tensor=1), 2, "--config.mesh.data=-1 --config.mesh.fsdp=2 --config.mesh.tensor=1"),
])
def test_a_mesh_that_does_not_fit_the_devices_names_the_keys_and_values_that_do(mesh, n, advice):
    config = _lm_config()
    config.mesh = mesh
    with pytest.raises(ValueError, match=re.escape(advice)) as err:
        build.mesh_and_rules(config, jax.devices()[:n])
    fixed = _lm_config()
    fixed.mesh = {kv.split("=")[0].removeprefix("--config.mesh."): int(kv.split("=")[1]) for kv in advice.split()}
    mesh_ok, _ = build.mesh_and_rules(fixed, jax.devices()[:n])       # the advice itself works
    assert mesh_ok.devices.size == n, str(err.value)


def test_tokenizer_and_datasets_from_the_config():
    config = _lm_config(source="passkey:40:2", eval_source="passkey:8:2:1", seq_len=16, batch_size=4)
    tok = build.build_tokenizer(config)
    assert isinstance(tok, ByteTokenizer)
    train, evals = build.build_datasets(config, tok)
    batch = next(iter(train))
    assert batch["inputs"].shape == (4, 16) and batch["inputs"].dtype == np.int32
    np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])   # next-token targets
    # the eval set is read once and unshuffled: two passes give the same batches
    first, second = [b["inputs"] for b in evals], [b["inputs"] for b in evals]
    assert len(first) >= 1 and all(np.array_equal(a, b) for a, b in zip(first, second))
    config.tokenizer = ""
    with pytest.raises(ValueError, match="config.tokenizer"):
        build.build_tokenizer(config)


def test_vocab_check_names_both_sizes_and_the_hint():
    build.check_vocab(ByteTokenizer(), 259)
    build.check_vocab(ByteTokenizer(), 512)            # a padded model vocabulary is fine
    with pytest.raises(ValueError, match=r"259 tokens but the model's vocab_size is 100; use X"):
        build.check_vocab(ByteTokenizer(), 100, hint="use X")


def test_export_tokenizer_copies_an_hf_folder_s_tokenizer_files(tmp_path):
    src = tmp_path / "tok"
    src.mkdir()
    for name, text in (("tokenizer.json", "{}"), ("tokenizer_config.json", '{"a": 1}'), ("vocab.json", "{}"),
                       ("config.json", "not a tokenizer file")):
        (src / name).write_text(text)

    class FolderTokenizer:
        path = str(src)
    out = tmp_path / "hf"
    assert build.export_tokenizer(FolderTokenizer(), out) == ["tokenizer.json", "tokenizer_config.json",
                                                              "vocab.json"]
    assert (out / "tokenizer_config.json").read_text() == '{"a": 1}' and not (out / "config.json").exists()


def test_a_sentencepiece_model_held_in_memory_exports_and_loads_back(tmp_path):
    from jaxsuite.core.tokenizer import load_tokenizer, train_sentencepiece
    tok = train_sentencepiece(["The capital of Zorvia is Klemt. <|im_end|>"] * 40, 300, user_symbols=["<|im_end|>"])
    assert getattr(tok, "path", None) is None
    assert build.export_tokenizer(tok, tmp_path / "hf") == ["tokenizer.model"]
    back = load_tokenizer(str(tmp_path / "hf"))
    text = "Klemt is the capital. <|im_end|>"
    assert back.encode(text) == tok.encode(text) and back.token_to_id("<|im_end|>") == tok.token_to_id("<|im_end|>")
    (tmp_path / "weights_only").mkdir()
    (tmp_path / "weights_only" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="holds no tokenizer files"):
        load_tokenizer(str(tmp_path / "weights_only"))


def test_train_and_data_blocks_reject_unknown_fields():
    assert dict(train_block()) == TRAIN_DEFAULTS and dict(data_block()) == DATA_DEFAULTS
    assert train_block(steps=7).steps == 7 and train_block(steps=7).lr == TRAIN_DEFAULTS["lr"]
    with pytest.raises(ConfigError, match="stepz"):
        train_block(stepz=3)
    with pytest.raises(ConfigError, match="tokenizer"):   # the tokenizer is config.tokenizer, not data's
        data_block(tokenizer="byte")


# every config file and its variants (the argument after the colon)
CONFIG_VARIANTS = {
    "qwen3_pretrain.py": [None, "tiny", "0.6b", "8b"], "halo_tiny.py": [None, "passkey", "test"],
    "halo_qwen3.py": ["2b", "9b"], "halo_stage.py": ["2b,1", "9b,3", "tiny,2"],
    "cpmobius_tiny.py": [None, "test"], "cpmobius_qwen2p5_math_7b.py": [None, "1.5b"],
    "latentchem_tiny.py": [None, "test"], "latentchem_qwen3_8b.py": [None], "ldl_tiny.py": [None, "test"],
    "ldl_m5.py": [None, "all_levels"], "agent_tiny.py": [None, "test"], "lora_forgetting.py": [None, "test"],
    "sebench_tiny.py": [None, "test"], "sebench_qwen3_8b.py": [None], "evoopt_tiny.py": [None, "test"],
    "evoopt_7b.py": [None], "evoopt_bench.py": [None, "local"], "tiers_tiny.py": [None, "test"],
    "tiers_pod.py": [None],
}


def _train_blocks(node, where="config"):
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            if "steps" in value and "lr" in value and "checkpoint_every" in value:
                yield f"{where}.{key}", value
            else:
                yield from _train_blocks(value, f"{where}.{key}")


def test_the_variant_list_covers_every_config_file():
    assert sorted(CONFIG_VARIANTS) == sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "configs",
                                                                                              "*.py")))


@pytest.mark.parametrize("name", sorted(CONFIG_VARIANTS))
def test_every_config_shares_the_train_block_shape_and_names_its_tokenizer_once(name):
    for arg in CONFIG_VARIANTS[name]:
        config = load_config(os.path.join(REPO, "configs", name), arg)
        blocks = list(_train_blocks(config))
        for where, block in blocks:
            assert set(block.keys()) == set(TRAIN_DEFAULTS), (name, arg, where)
        for where, block in [("config", config)] + [(k, v) for k, v in config.items()
                                                    if isinstance(v, ml_collections.ConfigDict)]:
            if isinstance(block.get("data"), ml_collections.ConfigDict):
                assert "tokenizer" not in block.data and "vocab_size" not in block.data, (name, arg, where)
        if any(j in config.job for j in ("agents.lookup", "sebench", "optmodel.job", "tiers.job")) and not config.get("tokenizer"):
            assert isinstance(config.vocab_size, int), (name, arg)       # a tokenizer trained on generated texts
        elif "forecast" not in config.job and "bench_eval" not in config.job:   # bench_eval asks a served model               # every language-model job names its tokenizer once
            assert blocks and isinstance(config.tokenizer, str) and config.tokenizer, (name, arg)


def test_fitting_pairs_by_hand_drops_what_does_not_fit_and_names_the_fix():
    """Byte ids (a -> 100, b -> 101, ...): BOS 1 before each prompt, EOS 2 after each target; a pair is kept when
    prompt + target fits seq_len, and no pair fitting is a one-line config error with the job's own hint."""
    tok = ByteTokenizer()
    prompts, targets = build.fitting_pairs(tok, ["ab", "abcdef", "c"], ["x", "y", "yz"], 5, what="judge",
                                           hint="shorten the pages")
    # "ab" -> [1, 100, 101] + "x" -> [123, 2] is 5 ids (kept); "abcdef" + "y" is 9 (dropped); "c" + "yz" is 5
    assert prompts == [[1, 100, 101], [1, 102]]
    assert targets == [[123, 2], [124, 125, 2]]
    with pytest.raises(ValueError, match=r"^refiner: no training pair fits seq_len=3; raise seq_len or shorten it$"):
        build.fitting_pairs(tok, ["ab"], ["x"], 3, what="refiner", hint="shorten it")
    with pytest.raises(ValueError, match="2 prompts but 1 targets"):
        build.fitting_pairs(tok, ["a", "b"], ["x"], 8, what="judge", hint="")
