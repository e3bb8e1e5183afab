"""python -m jaxsuite.merge on tiny transformers models: linear and task arithmetic against the same arithmetic in
PyTorch, TIES and DARE against the in-memory functions, the output loadable by transformers, sharded or not."""
import numpy as np
import pytest

from jaxsuite import merge
from jaxsuite.core import merging

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    config = transformers.Qwen3Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                      tie_word_embeddings=False)
    out = {}
    for name, seed in (("base", 0), ("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        model = transformers.Qwen3ForCausalLM(config)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        model.save_pretrained(root / name)
        out[name] = (root / name, {k: v.clone() for k, v in model.state_dict().items()})
    return root, out


def load(folder):
    return transformers.Qwen3ForCausalLM.from_pretrained(str(folder)).state_dict()


def test_linear_and_task_arithmetic_equal_pytorch_arithmetic(folders):
    root, f = folders
    (a, sa), (b, sb), (base, s0) = f["a"], f["b"], f["base"]
    assert merge.main(["--method", "linear", "--models", str(a), str(b), "--weights", "0.3", "0.7",
                       "--out", str(root / "lin")]) == 0
    got = load(root / "lin")
    for k in sa:
        torch.testing.assert_close(got[k], 0.3 * sa[k] + 0.7 * sb[k], rtol=1e-5, atol=1e-5)
    merge.merge_folders("task_arithmetic", [a, b], root / "ta", base=base, scale=0.5, shard_bytes=4096)
    assert (root / "ta" / "model.safetensors.index.json").is_file()            # sharded output
    got = load(root / "ta")
    for k in sa:
        torch.testing.assert_close(got[k], s0[k] + 0.5 * ((sa[k] - s0[k]) + (sb[k] - s0[k])), rtol=1e-5, atol=1e-5)


def test_ties_and_dare_stream_the_in_memory_functions(folders):
    root, f = folders
    (a, sa), (b, sb), (base, s0) = f["a"], f["b"], f["base"]
    merge.merge_folders("ties", [a, b], root / "ties", base=base, density=0.3)
    got = load(root / "ties")
    k = "model.layers.0.mlp.up_proj.weight"
    want = merging.ties(s0[k].numpy(), [sa[k].numpy(), sb[k].numpy()], density=0.3)
    np.testing.assert_allclose(got[k].numpy(), np.asarray(want), rtol=1e-6, atol=1e-6)
    merge.merge_folders("dare", [a], root / "dare1", base=base, drop=0.5, seed=4)
    merge.merge_folders("dare", [a], root / "dare2", base=base, drop=0.5, seed=4)
    one, two = load(root / "dare1"), load(root / "dare2")
    assert all(torch.equal(one[key], two[key]) for key in one)                  # the seed fixes the drops
    changed = (one[k] != s0[k]).float().mean().item()
    assert 0.3 < changed < 0.7                                                  # about half the entries moved


def test_bad_inputs_are_named(folders, tmp_path, capsys):
    root, f = folders
    assert merge.main(["--method", "ties", "--models", str(f["a"][0]), "--out", str(tmp_path / "o")]) == 2
    assert "needs --base" in capsys.readouterr().err
    assert merge.main(["--method", "linear", "--models", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a Hugging Face model folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
