"""The RecBole peer reads mtrec's own split, and its scores come back to mtrec's evaluator.

``benchmarks/recbole_peer.py`` exports a split as RecBole benchmark files; for sequential
models it writes RecBole's data augmentation itself (RecBole skips it for benchmark files).
These tests read the files back as RecBole would (tab-separated, space-separated sequences)
and check them against the split; no RecBole install is needed.
"""

from __future__ import annotations

import numpy as np

from benchmarks.recbole_peer import _dump_matrix, export_split
from mtrec.data import generate_synthetic
from mtrec.data.history import user_histories
from mtrec.evaluation import split_dataset
from mtrec.evaluation.evaluator import PrecomputedScores, evaluate_ranking


def _read(path):
    lines = path.read_text().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def _dataset():
    return generate_synthetic(n_items=30, n_users=8, n_interactions=160, n_categories=3, seed=4)


def test_general_export_is_the_split(tmp_path):
    ds = _dataset()
    sp = split_dataset(ds, "random")
    info = export_split(ds, sp, tmp_path, "syn-random", sequential=False)
    for phase in ("train", "valid", "test"):
        header, rows = _read(tmp_path / "syn-random" / f"syn-random.{phase}.inter")
        assert header == ["user_id:token", "item_id:token", "timestamp:float"]
        got = sorted((int(u), int(i)) for u, i, _ in rows)
        rows_of = sp.rows_of(phase)
        want = zip(ds.user_idx[rows_of].tolist(), ds.item_idx[rows_of].tolist(), strict=True)
        assert got == sorted(want)
        assert info["rows"][phase] == len(rows_of)
    _, items = _read(tmp_path / "syn-random" / "syn-random.item")
    assert [int(r[0]) for r in items] == list(range(ds.n_items))  # the whole catalog


def test_sequential_export_is_recbole_augmentation_of_the_loo_split(tmp_path):
    ds = _dataset()
    sp = split_dataset(ds, "loo")
    export_split(ds, sp, tmp_path, "syn-seq", sequential=True, max_len=5)
    full = user_histories(ds, np.concatenate([sp.train, sp.valid, sp.test]))
    before_test = user_histories(ds, sp.rows_before("test"))
    for phase in ("train", "valid", "test"):
        header, rows = _read(tmp_path / "syn-seq" / f"syn-seq.{phase}.inter")
        assert header[1] == "item_id_list:token_seq"
        seen: dict[int, int] = {}
        for u, seq, target, _ in rows:
            u, seq, target = int(u), [int(x) for x in seq.split(" ")], int(target)
            items = full[u].items.tolist()
            # RecBole's augmentation: one example per position 1..n-1, input = the <= max_len
            # items before it; LS: the last example is test, the one before valid.
            if phase == "train":
                pos = seen[u] = seen.get(u, 0) + 1
                assert pos <= len(items) - 3
            else:
                pos = len(items) - (1 if phase == "test" else 2)
            assert target == items[pos] and seq == items[max(0, pos - 5) : pos]
        if phase == "test":
            for u, seq, _, _ in rows:
                # The test input ends with the valid item (RecBole's LS protocol).
                assert int(seq.split(" ")[-1]) == before_test[int(u)].items[-1]
    # One example per interaction except each user's first.
    phases = ("train", "valid", "test")
    total = sum(len(_read(tmp_path / "syn-seq" / f"syn-seq.{p}.inter")[1]) for p in phases)
    assert total == ds.n_interactions - ds.n_users


def test_dumped_scores_reach_the_evaluator_by_token(tmp_path):
    ds = _dataset()
    sp = split_dataset(ds, "loo")
    rng = np.random.default_rng(0)
    scores = rng.random((ds.n_users, ds.n_items)).astype(np.float32)
    # A dump as the runner writes it: rows and columns in RecBole's own (shuffled) order.
    users, items = rng.permutation(ds.n_users), rng.permutation(ds.n_items)
    test_users = ds.user_idx[sp.test]
    targets = {int(u): int(i) for u, i in zip(test_users, ds.item_idx[sp.test], strict=True)}
    path = tmp_path / "scores.npz"
    np.savez(
        path,
        items=items.astype(str),
        test_users=users.astype(str),
        test_scores=scores[users][:, items],
        test_targets=np.array([str(targets[u]) for u in users]),
        test_target_counts=np.ones(len(users), np.int64),
    )
    with np.load(path) as z:
        matrix, info = _dump_matrix(z, "test", ds)
    np.testing.assert_array_equal(matrix, scores)
    assert {u: t.tolist() for u, t in info["recbole_targets"].items()} == {
        u: [t] for u, t in targets.items()
    }
    direct = evaluate_ranking(PrecomputedScores(scores), ds, sp, ks=(10,))
    assert evaluate_ranking(PrecomputedScores(matrix), ds, sp, ks=(10,)) == direct
