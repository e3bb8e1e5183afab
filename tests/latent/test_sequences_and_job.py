"""Curriculum sequences by hand, the training losses against direct computations, evaluation helpers by
hand, and the tiny LatentChem job end to end."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsuite.core import train as tr
from jaxsuite.core.config_utils import load_config
from jaxsuite.core.tokenizer import ByteTokenizer
from jaxsuite.latent.chem_tasks import ChemExample
from jaxsuite.latent.evaluation import text_steps, win_rate
from jaxsuite.latent.head import LatentReasoner, LatentTokens, latent_forward
from jaxsuite.latent.sequences import ExampleBatches, SequenceFormat, build_row, pack_rows
from jaxsuite.latent.training import latent_loss, plain_loss
from jaxsuite.models.config import DecoderConfig
from jaxsuite.models.factory import init_model

TOK = LatentTokens.after(259)
BYTES = ByteTokenizer()
FMT = SequenceFormat(TOK, bos_id=1, eos_id=2, pad_id=0, num_queries=2, latents_per_step=2)
EX = ChemExample(task="rings", question="Rings in C1CC1?", answer="1", answer_type="int",
                 steps=["ring bonds: 1", "rings = 1", "done"], source="C1CC1")


def test_rows_of_each_form_by_hand():
    prompt = [1, TOK.mol_start, TOK.mol_pad, TOK.mol_pad, TOK.mol_end] + BYTES.encode("Rings in C1CC1?\n")
    answer = BYTES.encode("<answer>1</answer>") + [2]
    assert build_row(EX, BYTES, FMT, form="answer")["ids"] == prompt + answer
    cot = build_row(EX, BYTES, FMT, form="cot")
    assert cot["ids"] == prompt + BYTES.encode("ring bonds: 1\nrings = 1\ndone\n") + answer
    # stage 2 with c = 2: the first two steps become 4 latent slots; the third stays text
    row = build_row(EX, BYTES, FMT, form="latent", stage=2)
    assert row["ids"] == (prompt + [TOK.start_latent] + [TOK.latent] * 4 + [TOK.end_latent]
                          + BYTES.encode("done\n") + answer)
    assert (row["prompt_len"], row["n_latent"]) == (len(prompt) + 1, 4)
    # a stage past the last step hides all of them
    assert build_row(EX, BYTES, FMT, form="latent", stage=9)["n_latent"] == 6
    with pytest.raises(ValueError, match="unknown sequence form"):
        build_row(EX, BYTES, FMT, form="essay")


def test_packing_targets_masks_and_slots_by_hand():
    row = {"ids": [1, 10, 11, TOK.start_latent, TOK.latent, TOK.latent, TOK.end_latent, 20, 2], "prompt_len": 4,
           "n_latent": 2}
    b = pack_rows([row], seq_len=12, max_latents=3, pad_id=0)
    assert b["inputs"][0, :8].tolist() == row["ids"][:-1]
    assert b["targets"][0, :8].tolist() == row["ids"][1:]
    # losses from the last prompt token (<start_latent> predicts "keep thinking") to eos
    assert b["loss_mask"][0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert b["targets"][0, 3:6].tolist() == [TOK.latent, TOK.latent, TOK.end_latent]
    assert b["latent_slots"][0].tolist() == [4, 5, -1]
    with pytest.raises(ValueError, match="does not fit seq_len"):
        pack_rows([row], seq_len=5, max_latents=3, pad_id=0)
    with pytest.raises(ValueError, match="more than max_latents"):
        pack_rows([row], seq_len=12, max_latents=1, pad_id=0)


def test_batches_are_resumable_and_carry_features():
    feats = lambda smiles: (np.ones((len(smiles), 3, 5), np.float32), np.ones((len(smiles), 3), bool))  # noqa
    ds = ExampleBatches([EX, EX], BYTES, FMT, form="latent", stage=1, batch_size=3, seq_len=64, max_latents=6,
                        seed=4, features=feats)
    it = iter(ds)
    first, second = next(it), next(it)
    again = iter(ds)
    again.set_state({"step": 1})
    np.testing.assert_array_equal(next(again)["inputs"], second["inputs"])
    assert first["mol_features"].shape == (3, 3, 5) and it.get_state() == {"step": 2}


def _model(num_queries=2):
    backbone = init_model(DecoderConfig(vocab_size=272, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                        model_type="qwen3"), seed=0)
    return LatentReasoner(backbone, TOK, mol_feature_dim=8, num_queries=num_queries, heads=2, rngs=nnx.Rngs(1))


def test_losses_equal_direct_cross_entropy_and_the_hinge_by_hand():
    model = _model()
    rows = [build_row(EX, BYTES, FMT, form="latent", stage=1)]
    batch = {k: jnp.asarray(v) for k, v in pack_rows(rows, 96, 6, 0).items()}
    batch["mol_features"] = jnp.ones((1, 3, 8))
    batch["mol_mask"] = jnp.ones((1, 3), bool)
    logits, _ = latent_forward(model, batch["inputs"], batch["positions"], batch["latent_slots"],
                               segment_ids=batch["segment_ids"], mol_features=batch["mol_features"],
                               mol_mask=batch["mol_mask"])
    expected, n = tr.cross_entropy(logits, batch["targets"], batch["loss_mask"])
    loss, tokens = latent_loss(model, batch)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5) and float(tokens) == float(n)
    cf, _ = latent_forward(model, batch["inputs"], batch["positions"], batch["latent_slots"], corrupt="zeros",
                           segment_ids=batch["segment_ids"], mol_features=batch["mol_features"],
                           mol_mask=batch["mol_mask"])
    cf_sum, _ = tr.cross_entropy(cf, batch["targets"], batch["loss_mask"])
    gap = (float(cf_sum) - float(expected)) / float(n)
    total, _, aux = latent_loss(model, batch, hinge_weight=2.0, margin=0.5)
    assert float(total) / float(n) == pytest.approx(float(expected) / float(n) + 2.0 * max(0.0, 0.5 - gap),
                                                    rel=1e-4)
    # the plain loss of a CoT row is the direct CE with the soft tokens in the prompt
    cot = {k: jnp.asarray(v) for k, v in pack_rows([build_row(EX, BYTES, FMT, form="cot")], 96, 1, 0).items()}
    embeds, _ = model.prompt_embeds(cot["inputs"], batch["mol_features"], batch["mol_mask"])
    direct = tr.cross_entropy(model.logits(model.hidden_states(inputs_embeds=embeds, segment_ids=cot["segment_ids"])),
                              cot["targets"], cot["loss_mask"])[0]
    cot.update(mol_features=batch["mol_features"], mol_mask=batch["mol_mask"])
    assert float(plain_loss(model, cot)[0]) == pytest.approx(float(direct), rel=1e-5)


def test_win_rate_and_text_steps_by_hand():
    latent = np.asarray([1, 1, 0, 0, 1], bool)
    cot = np.asarray([1, 0, 1, 0, 0], bool)
    assert win_rate(latent, cot) == {"wins": 2, "losses": 1, "ties": 2, "non_tie_win_rate": pytest.approx(2 / 3)}
    assert np.isnan(win_rate(cot, cot)["non_tie_win_rate"])
    assert text_steps("a\nb\n<answer>1</answer>") == 2 and text_steps("<answer>1</answer>") == 0


@pytest.mark.slow
def test_tiny_latentchem_job_end_to_end(tmp_path, monkeypatch, check_png):
    """The job's figures, recomputed from the answers it generated: every evaluation is recorded, and each
    accuracy, per-task accuracy, win count and causal-test accuracy is judged again answer by answer."""
    from jaxsuite.latent import evaluation
    from jaxsuite.latent.chem_tasks import check_answer, extract_answer
    from jaxsuite.latent.job import run

    answered = []                               # every evaluation the job runs: questions and greedy answers
    answer_all = evaluation.answer_all

    def recording_answer_all(model, examples, tokenizer, fmt, *, latent, corrupt="none", **kwargs):
        out = answer_all(model, examples, tokenizer, fmt, latent=latent, corrupt=corrupt, **kwargs)
        answered.append({"latent": latent, "corrupt": corrupt, "examples": list(examples), "texts": out["texts"]})
        return out

    monkeypatch.setattr(evaluation, "answer_all", recording_answer_all)
    config = load_config("configs/latentchem_tiny.py", "test")
    results = run(config, str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())

    def judged(call) -> np.ndarray:             # [N] bool: is each answer right
        return np.asarray([check_answer(e, extract_answer(t)) for e, t in zip(call["examples"], call["texts"])])

    cot = [c for c in answered if not c["latent"]]
    clean = [c for c in answered if c["latent"] and c["corrupt"] == "none"]
    assert [c["stage"] for c in saved["curriculum"]] == [1]
    assert len(cot) == 1 and len(clean) == 2    # the CoT baseline; after curriculum stage 1, then after GRPO
    cot_ok, latent_ok = judged(cot[0]), judged(clean[-1])
    assert len(cot_ok) == len(latent_ok) == saved["test_examples"] == 8
    for key, ok, call in (("cot", cot_ok, cot[0]), ("latent", latent_ok, clean[-1])):
        tasks = np.asarray([e.task for e in call["examples"]])
        assert saved[key]["accuracy"] == pytest.approx(ok.mean())
        assert saved[key]["accuracy_by_task"] == pytest.approx({t: ok[tasks == t].mean() for t in set(tasks)})
        assert set(tasks) <= {"rings", "hbd", "has_group"}
    assert saved["curriculum"][0]["accuracy"] == pytest.approx(judged(clean[0]).mean())
    wins, losses = int(np.sum(latent_ok & ~cot_ok)), int(np.sum(~latent_ok & cot_ok))
    assert [saved["win_rate"][k] for k in ("wins", "losses", "ties")] == [wins, losses, 8 - wins - losses]
    assert saved["headline_model"] == "latent after GRPO"
    assert saved["accuracy_gain"] == pytest.approx(latent_ok.mean() - cot_ok.mean())
    before_ok = judged(clean[0])                # the curriculum's model, compared with CoT the same way
    assert saved["before_grpo"]["accuracy_gain"] == pytest.approx(before_ok.mean() - cot_ok.mean())
    assert saved["before_grpo"]["win_rate"]["wins"] == int(np.sum(before_ok & ~cot_ok))
    assert saved["before_grpo"]["win_rate"]["losses"] == int(np.sum(~before_ok & cot_ok))
    correct = json.loads((tmp_path / "correct.json").read_text())
    assert correct == {"cot": cot_ok.astype(int).tolist(), "latent_before_grpo": before_ok.astype(int).tolist(),
                       "latent": latent_ok.astype(int).tolist()}
    assert set(saved["causal_test"]) == {"clean", "zeros", "noise"}
    assert saved["causal_test"]["clean"] == pytest.approx(latent_ok.mean())
    for mode in ("zeros", "noise"):
        (call,) = [c for c in answered if c["corrupt"] == mode]
        assert saved["causal_test"][mode]["accuracy"] == pytest.approx(judged(call).mean())
    assert results["wall_clock_speedup"] > 0
    check_png(tmp_path / "stages.png", size=(1100, 418))      # 10 x 3.8 inches at 110 dpi
    assert set(saved["stages"]) == {"sft_answer", "sft_cot", "cot_baseline", "latent_stage1"}
    assert saved["grpo"]["steps"] == 2 and saved["grpo"]["accuracy_after"] == pytest.approx(latent_ok.mean())
    grpo_rows = _metrics(tmp_path / "grpo" / "metrics.jsonl")
    assert saved["grpo"]["informative_groups_mean"] == pytest.approx(np.mean([r["informative_groups"]
                                                                              for r in grpo_rows]))
    assert saved["grpo"]["reward_mean_all"] == pytest.approx(np.mean([r["reward_mean"] for r in grpo_rows]))

    # The same job on 1 device (issue 20): a few steps of every stage (SMILES-encoder pre-training, answer and CoT
    # SFT, the CoT baseline, the latent curriculum, GRPO) see the same rows in the same order, agree within float
    # tolerance, and give the same answers at evaluation.
    import jax
    from jaxsuite.core.build import mesh_and_rules
    from jaxsuite.latent import job

    if jax.device_count() < 8:
        pytest.skip("the 1-against-8-device half needs the 8 forced host devices of tests/conftest.py")
    monkeypatch.setattr(job, "mesh_and_rules", lambda c: mesh_and_rules(c, devices=jax.devices()[:1]))
    one = run(config, str(tmp_path / "one_device"))
    stages = sorted(p.parent.name for p in tmp_path.glob("*/metrics.jsonl"))
    assert stages == ["cot_baseline", "grpo", "latent_stage1", "mol_encoder", "sft_answer", "sft_cot"]
    for stage in stages:
        rows8, rows1 = (_metrics(root / stage / "metrics.jsonl") for root in (tmp_path, tmp_path / "one_device"))
        assert [r["step"] for r in rows1] == [r["step"] for r in rows8] and rows1, stage
        for r1, r8 in zip(rows1, rows8):
            for key in r1:
                if key.endswith("tokens") or key in ("reward_mean", "latent_steps", "updates"):
                    assert r8[key] == r1[key], (stage, r1["step"], key)      # the same rows in the same order
                elif key != "time":
                    assert r8[key] == pytest.approx(r1[key], rel=1e-4, abs=1e-6), (stage, r1["step"], key)
    for key in ("cot", "latent"):
        for field in ("accuracy", "mean_latent_steps", "mean_text_steps", "mean_generated_tokens"):
            assert one[key][field] == results[key][field], (key, field)
    assert [one["win_rate"][k] for k in ("wins", "losses", "ties")] == \
        [results["win_rate"][k] for k in ("wins", "losses", "ties")]


def _metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_chem_reward_by_hand():
    from jaxsuite.latent.grpo import chem_reward

    assert chem_reward(EX, "x <answer>1</answer>") == 2.5            # format + type + correct
    assert chem_reward(EX, "<answer>2</answer>") == 1.5               # format + type, wrong
    assert chem_reward(EX, "<answer>C1CC</answer>") == 1.0            # format only: not an integer
    assert chem_reward(EX, "no tags") == 0.0


def test_latent_rollouts_score_like_the_sampler_under_the_policy():
    """The RL update re-runs each row's latent steps: its log-probs of the sampled answer equal the sampler's."""
    from jaxsuite.core import sharding as shd
    from jaxsuite.generate import generate
    from jaxsuite.latent.grpo import rollout_batch
    from jaxsuite.latent.head import latent_hook
    from jaxsuite.latent.sequences import prompt_ids
    from jaxsuite.rl.policy import Policy, PolicyLossConfig

    import jax
    model = _model(num_queries=2)
    fmt = SequenceFormat(TOK, bos_id=1, eos_id=2, pad_id=0, num_queries=2, latents_per_step=1)
    prompts = [prompt_ids(EX, BYTES, fmt, latent=True), prompt_ids(EX, BYTES, fmt, latent=True)[:-3]
               + [TOK.start_latent]]
    inputs = {"mol_features": jnp.ones((2, 3, 8)), "mol_mask": jnp.ones((2, 3), bool)}
    out = generate(model, prompts, 6, temperature=0.7, top_p=0.9, stop_tokens=2, pad_token_id=0, seed=3,
                   prefill_hook=latent_hook(3), hook_inputs=inputs, extra_cache_slots=4, return_logprobs=True)
    batch = rollout_batch(TOK, prompts, out, np.zeros(2), seq_len=64, pad_id=0, max_latents=3)
    batch.update({k: np.asarray(v) for k, v in inputs.items()})
    policy = Policy(model, optim=dict(lr=1e-3, steps=1), loss=PolicyLossConfig(temperature=0.7),
                    mesh=shd.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1]))
    logp, _ = policy.score(batch)
    for i in range(2):
        np.testing.assert_allclose(logp[i][batch["loss_mask"][i] > 0], out.logprobs[i, :out.lengths[i]],
                                   rtol=1e-4, atol=2e-5)


def test_paper_config_loads_and_names_a_missing_data_file(tmp_path, monkeypatch):
    from jaxsuite.latent.job import run

    config = load_config("configs/latentchem_qwen3_8b.py")
    assert (config.mol.num_queries, config.latent.per_step, config.latent.stages) == (128, 2, 7)
    assert (config.grpo.num_generations, config.grpo.optim.lr, config.grpo.clip) == (2, 1e-5, 0.2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        run(config, str(tmp_path / "w"))
