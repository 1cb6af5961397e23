"""``mtrec calibrate``: validation users only, the weight written per tier and model name.

The tiers here are registered stand-ins that know each user's held-out items (an oracle a real
LLM is not): one puts the user's *test* item first, one the *validation* item. If calibrate
ever scored against test rows, the first would win; it must lose, and the second must win.
"""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from agent import Recommender
from agent.calibrate import calibrate, ndcg_at_k, parse_weights, write_calibration
from agent.llm.types import RankedPick, RerankOutput, RerankRequest, TierAnswer
from agent.schema import Tier
from agent.settings import load_settings
from mtrec.data.history import user_histories
from mtrec.evaluation.protocols import split_dataset
from tests.conftest import run_cli

USERS = 80


class Oracle:
    """Ranks the candidates in the model's order, except that it puts one held-out item of the
    user first. It recognises the user by the history it is shown, and records what it saw."""

    name = Tier.LOCAL
    prompt_id = "oracle@v1"

    def __init__(self, rec: Recommender, plant: str) -> None:
        self.model_name = f"oracle-{plant}"
        ds = rec.ds
        split = split_dataset(ds, "loo", seed=rec.model.config.train.seed)
        self.held: dict[str, tuple[str, str]] = {}  # user -> (valid item, test item)
        valid = {int(ds.user_idx[r]): ds.items[int(ds.item_idx[r])].item_id for r in split.valid}
        for r in split.test:
            u = int(ds.user_idx[r])
            if u in valid:
                self.held[ds.users[u].user_id] = (valid[u], ds.items[int(ds.item_idx[r])].item_id)
        self.train_tail: dict[tuple[str, ...], str] = {}
        for u, h in enumerate(user_histories(ds, split.train)):
            self.train_tail[tuple(ds.items[i].item_id for i in h.items[-15:])] = ds.users[u].user_id
        self.plant = plant
        self.users_seen: list[str] = []
        self.unrecognised = 0

    def rerank(self, req: RerankRequest) -> TierAnswer:
        shown = tuple(h.item_id for h in req.history)
        user = self.train_tail.get(shown)
        if user is None:  # not a training-rows history: calibrate read something else
            self.unrecognised += 1
        order = sorted(req.candidates, key=lambda c: -c.engagement)
        if user is not None:
            self.users_seen.append(user)
            valid, test = self.held[user]
            assert valid not in shown and test not in shown
            target = valid if self.plant == "valid" else test
            order = sorted(order, key=lambda c: c.item_id != target)  # stable: target first
        picks = [RankedPick(id=c.short_id) for c in order]
        return TierAnswer(RerankOutput(ranking=picks), 10, 5, self.model_name)


@pytest.fixture(scope="module")
def rec(trained_workspace) -> Recommender:
    # Head weights 0: the model orders candidates by engagement, the order the oracle keeps
    # (a candidate carries its engagement, not the fused score), so the oracle's answer differs
    # from the model's only by where it puts its planted item.
    return Recommender.load(trained_workspace, fuse_like=0.0, fuse_rating=0.0)


def test_a_tier_that_knows_test_items_never_wins(rec) -> None:
    oracle = Oracle(rec, "test")
    rec.chain.set_tier(Tier.LOCAL, oracle)
    cal = calibrate(rec, "local", USERS, seed=7, weights=(0.1, 0.5, 1.0))
    assert cal.answered == cal.users == USERS and oracle.unrecognised == 0
    assert len(set(oracle.users_seen)) == USERS  # every request ran on training rows only
    assert cal.replay_mismatches == 0
    # Putting the test item first only ever pushes the validation item down.
    assert all(r.gain <= 0 for r in cal.rows) and cal.best_weight == 0.0
    assert cal.key == "local:oracle-test"


def test_a_tier_that_knows_validation_items_wins(rec) -> None:
    rec.chain.set_tier(Tier.LOCAL, Oracle(rec, "valid"))
    cal = calibrate(rec, "local", USERS, seed=7, weights=(0.1, 0.5, 1.0))
    best = next(r for r in cal.rows if r.weight == cal.best_weight)
    assert cal.best_weight > 0 and best.low > 0
    assert best.gain == max(r.gain for r in cal.rows)


def test_the_weight_is_written_for_its_tier_and_model_only(rec, tmp_path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    toml = ws / "mtrec.toml"
    toml.write_text(
        '# my settings\nllm_model = "gpt-4o-mini"\nllm_api_key = "abcdefgh-secret"\n'
        "candidates = 25  # keep\n"
    )
    toml.chmod(0o600)
    rec.chain.set_tier(Tier.LOCAL, Oracle(rec, "valid"))
    cal = calibrate(rec, "local", USERS, seed=7, weights=(0.5,))
    write_calibration(ws, cal, "ckpt-x")
    other = calibrate(rec, "local", 20, seed=8, weights=(0.5,))
    other.model_name = "another.gguf"
    write_calibration(ws, other)
    text = toml.read_text()
    assert text.startswith("# my settings\n") and "candidates = 25  # keep" in text
    assert stat.S_IMODE(toml.stat().st_mode) == 0o600
    settings = load_settings(ws)
    assert settings.candidates == 25 and settings.llm_api_key is not None
    assert settings.weight_for(Tier.LOCAL, "oracle-valid") == cal.best_weight == 0.5
    assert settings.weight_for(Tier.LOCAL, "another.gguf") == other.best_weight
    assert settings.weight_for(Tier.REMOTE, "oracle-valid") == settings.llm_weight
    entry = settings.calibration["local:oracle-valid"]
    assert entry.model_extra["split"] == "validation" and entry.model_extra["users"] == USERS
    assert not list(ws.glob(".mtrec.toml.*"))  # no temporary file left behind


def test_a_tier_that_never_answers_writes_nothing(rec) -> None:
    from agent.errors import TierError

    class Down:
        name, model_name, prompt_id = Tier.LOCAL, "down", "down@v1"

        def rerank(self, req: RerankRequest) -> TierAnswer:
            raise TierError("local model failed: out of memory")

    rec.chain.set_tier(Tier.LOCAL, Down())
    with pytest.raises(TierError, match=r"answered none of the 5 requests .*out of memory"):
        calibrate(rec, "local", 5)


def test_weights_and_ndcg() -> None:
    assert parse_weights("0.5, 0.1,1") == (0.0, 0.1, 0.5, 1.0)
    for bad in ("0,abc", "1.5", "-0.1"):
        with pytest.raises(ValueError, match="--weights"):
            parse_weights(bad)
    assert ndcg_at_k(["a", "b"], frozenset({"b"})) == pytest.approx(1 / np.log2(3))
    assert ndcg_at_k(["a", "b"], frozenset({"a", "b"})) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--llm", "none"], "--llm must be local or remote"),
        (["--llm", "local", "--users", "0"], "--users must be >= 1"),
        (["--llm", "local", "--weights", "0,x"], "--weights must be numbers in [0, 1]"),
    ],
)
def test_bad_options_are_one_line_errors(trained_workspace, capsys, args, message) -> None:
    code, out, err = run_cli(["calibrate", "-w", str(trained_workspace), *args], capsys)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_the_remote_tier_unconfigured_is_a_one_line_error(trained_workspace, capsys) -> None:
    toml = trained_workspace / "mtrec.toml"
    before = toml.read_bytes() if toml.exists() else None
    code, _, err = run_cli(
        ["calibrate", "-w", str(trained_workspace), "--llm", "remote", "--users", "3"], capsys
    )
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "the remote tier is not configured (set MTREC_LLM_BASE_URL" in err
    assert (toml.read_bytes() if toml.exists() else None) == before  # nothing written


@pytest.mark.slow
def test_cli_calibrates_the_real_local_tier(trained_workspace, gguf_path, capsys) -> None:
    code, out, err = run_cli(
        ["calibrate", "-w", str(trained_workspace), "--llm", "local", "--users", "6", "--json"],
        capsys,
    )
    assert code == 0, err
    cal = json.loads(out)
    assert cal["tier"] == "local" and cal["answered"] == cal["users"] == 6
    assert cal["model_name"].endswith(".gguf") and cal["key"] == f"local:{cal['model_name']}"
    assert [r["weight"] for r in cal["rows"]] == [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1]
    settings = load_settings(trained_workspace)
    assert settings.weight_for(Tier.LOCAL, cal["model_name"]) == cal["best_weight"]
    (trained_workspace / "mtrec.toml").unlink()  # the session's workspace is shared
