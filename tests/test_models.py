"""Model shapes, the key/value cache against full recomputation, attention capture, save and load."""
import dataclasses

import pytest
import torch

from icrl_lab.models import ADConfig, DPTConfig, ICRLTransformer, attention_per_step, load_model, save_model


def stream(batch, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(81, (batch, steps), generator=g), torch.randint(6, (batch, steps), generator=g),
            torch.randint(2, (batch, steps), generator=g).float())


@pytest.mark.parametrize("tokens_per_step", [1, 3])
def test_logits_have_one_prediction_per_step(tokens_per_step):
    model = ICRLTransformer(ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), tokens_per_step=tokens_per_step,
                                     d_model=32, n_layer=2, n_head=2))
    logits, attention = model(*stream(3, 17), return_attention=True)
    assert logits.shape == (3, 17, 5)
    assert len(attention) == 2 and attention[0].shape == (3, 2, 17 * tokens_per_step, 17 * tokens_per_step)
    per_step = attention_per_step(attention[0], tokens_per_step)
    assert per_step.shape == (3, 2, 17, 17)
    torch.testing.assert_close(per_step.sum(-1), torch.ones(3, 2, 17))
    assert torch.all(per_step.triu(1) == 0), "no step attends to its future"


@pytest.mark.parametrize("tokens_per_step, absolute_positions", [(1, False), (3, False), (1, True), (3, True)])
def test_kv_cache_matches_full_recomputation_across_a_sliding_window(tokens_per_step, absolute_positions):
    torch.manual_seed(0)
    config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=8, tokens_per_step=tokens_per_step,
                      d_model=32, n_layer=3, n_head=4, absolute_positions=absolute_positions)
    model = ICRLTransformer(config).eval()
    inputs = stream(4, 45)  # more than five windows long: the cache's ring buffer wraps many times
    with torch.no_grad():
        full = model(*inputs)
        cache = model.new_cache(4)
        incremental = torch.cat([model(*(x[:, t:t + 1] for x in inputs), cache=cache) for t in range(45)], dim=1)
        # Feeding several steps at once into the cache gives the same too.
        cache = model.new_cache(4, chunk_steps=5)
        chunked = torch.cat([model(*(x[:, t:t + 5] for x in inputs), cache=cache) for t in range(0, 45, 5)], dim=1)
    torch.testing.assert_close(incremental, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at most"):
        model(*(x[:, :2] for x in inputs), cache=model.new_cache(4))


def test_absolute_positions_tell_a_step_its_place_up_to_the_window_and_not_after():
    torch.manual_seed(0)
    config = ADConfig(num_obs=81, num_actions=5, window_steps=4, d_model=16, n_layer=1, n_head=2, absolute_positions=True)
    model = ICRLTransformer(config).eval()
    same_step = [x[:, :1].repeat(1, 9) for x in stream(1, 1)]  # one step, repeated: only its place differs
    with torch.no_grad():
        logits = model(*same_step)[0]
        relative_only = ICRLTransformer(dataclasses.replace(config, absolute_positions=False)).eval()(*same_step)[0]
    assert not torch.allclose(logits[1], logits[2]), "places 1 and 2 differ"
    # Steps 7 and 8 see four steps each, all past the window's places: every such step takes the last place.
    torch.testing.assert_close(logits[7], logits[8], msg="every step past the window takes the last place")
    torch.testing.assert_close(relative_only[1], relative_only[2], msg="rotary embeddings alone cannot tell them apart")


def test_without_the_previous_action_input_a_token_keeps_only_where_episodes_start():
    torch.manual_seed(0)
    config = ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), window_steps=8, d_model=32, n_layer=2, n_head=4,
                      previous_action_input=False)
    model = ICRLTransformer(config).eval()
    obs, actions, rewards = stream(2, 12)
    other_moves = torch.where(actions == 5, actions, (actions + 1) % 5)  # every move changed, every start kept
    one_more_start = actions.clone()
    one_more_start[:, 6] = 5
    with_moves = ICRLTransformer(dataclasses.replace(config, previous_action_input=True)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(obs, other_moves, rewards), model(obs, actions, rewards))
        assert not torch.allclose(model(obs, one_more_start, rewards)[:, 6:], model(obs, actions, rewards)[:, 6:])
        assert not torch.allclose(with_moves(obs, other_moves, rewards), with_moves(obs, actions, rewards))


def test_window_limits_what_a_step_sees():
    torch.manual_seed(0)
    model = ICRLTransformer(ADConfig(num_obs=81, num_actions=5, window_steps=4, d_model=16, n_layer=1, n_head=2)).eval()
    obs, actions, rewards = stream(1, 12)
    changed = obs.clone()
    changed[0, 0] = (obs[0, 0] + 1) % 81
    with torch.no_grad():
        before, after = model(obs, actions, rewards), model(changed, actions, rewards)
    assert not torch.allclose(before[0, 3], after[0, 3]), "step 3 sees step 0 (window 4)"
    torch.testing.assert_close(before[0, 4:], after[0, 4:], msg="one layer: later steps do not see step 0")


def test_observation_factors_share_rows_and_columns():
    model = ICRLTransformer(ADConfig(num_obs=81, num_actions=5, obs_factors=(9, 9), d_model=16, n_layer=1, n_head=2))
    assert [e.num_embeddings for e in model.obs_embeddings] == [9, 9]
    obs = torch.tensor([[0, 8, 72, 80]])
    digits = (obs[..., None] // model.obs_radix) % torch.tensor(model.obs_factor_sizes)
    assert digits[0].tolist() == [[0, 0], [0, 8], [8, 0], [8, 8]]


def test_key_dropout_keeps_each_token_its_own_key_and_is_off_when_acting():
    torch.manual_seed(0)
    config = ADConfig(num_obs=81, num_actions=5, d_model=16, n_layer=1, n_head=2, key_dropout=0.999)
    model, inputs = ICRLTransformer(config), stream(2, 12)
    plain = ICRLTransformer(dataclasses.replace(config, key_dropout=0.0))
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        model.eval()
        plain.eval()
        torch.testing.assert_close(model(*inputs), plain(*inputs), msg="no key is dropped when acting")
        model.train()
        x = model.embed(*inputs)
        attention = model.blocks[0].attention
        dropped, _ = attention(x, torch.arange(12))
        values = attention.qkv(x).view(2, 12, 3, 2, 8)[:, :, 2].reshape(2, 12, 16)
    # Nearly every other key is dropped, so each token attends to itself alone: its own value.
    torch.testing.assert_close(dropped, attention.out(values))


@pytest.mark.parametrize("field, value, fragment", [
    ("d_model", 30, "d_model=30"), ("tokens_per_step", 2, "tokens_per_step=2"),
    ("obs_factors", (9, 8), "obs_factors=(9, 8)"), ("window_steps", 0, "window_steps=0"),
    ("key_dropout", 1.0, "key_dropout=1.0"), ("absolute_positions", "yes", "True or False"),
    ("previous_action_input", 0, "previous_action_input=0")])
def test_bad_config_is_named(field, value, fragment):
    kwargs = {"num_obs": 81, "num_actions": 5, "d_model": 32, "n_head": 4, field: value}
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        ADConfig(**kwargs)


def test_save_and_load_round_trip(tmp_path):
    model = ICRLTransformer(DPTConfig(num_obs=1, num_actions=5, d_model=16, n_layer=1, n_head=2)).eval()
    save_model(model, tmp_path / "m", {"note": "x"})
    loaded, record = load_model(tmp_path / "m")
    assert record["kind"] == "dpt" and record["note"] == "x" and loaded.config == model.config
    inputs = (torch.zeros(2, 6, dtype=torch.long), torch.randint(6, (2, 6)), torch.rand(2, 6))
    torch.testing.assert_close(loaded(*inputs), model(*inputs))
    assert not any(p.suffix == ".pt" or p.suffix == ".pkl" for p in (tmp_path / "m").iterdir())


def test_loading_a_missing_or_corrupt_model_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a saved model"):
        load_model(tmp_path)
    model = ICRLTransformer(ADConfig(num_obs=81, num_actions=5, d_model=16, n_layer=1, n_head=2))
    save_model(model, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt or incompatible"):
        load_model(tmp_path / "m")


def test_ad_and_dpt_train_on_different_targets():
    torch.manual_seed(0)
    obs, prev_actions, prev_rewards = stream(2, 6)
    batch = {"observations": obs, "prev_actions": prev_actions, "prev_rewards": prev_rewards,
             "actions": torch.randint(5, (2, 6)), "optimal_actions": torch.randint(5, (2, 6))}
    for config, target in ((ADConfig, "actions"), (DPTConfig, "optimal_actions")):
        model = ICRLTransformer(config(num_obs=81, num_actions=5, d_model=16, n_layer=1, n_head=2))
        logits = model(obs, prev_actions, prev_rewards).reshape(-1, 5)
        expected = torch.nn.functional.cross_entropy(logits, batch[target].reshape(-1))
        torch.testing.assert_close(model.loss(batch), expected)
