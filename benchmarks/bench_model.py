"""mtrec's multi-task model and in-project baselines beside the RecBole peer, same split.

For each protocol: the multi-task model over several seeds (mean and sd) and the in-project
baselines (Pop, ItemKNN, BPR, Content and the recency floor LastItemKNN), every one scored
by ``mtrec.evaluation`` under both conventions:

  masked    earlier-phase items excluded (RecBole's general-model convention, mask="history")
  unmasked  nothing excluded (RecBole's sequential-model convention, mask="none")

Per-user test metrics go to ``benchmarks/results/per_user/mtrec-<dataset>-<protocol>-<model>
.npz`` (one file per seed for MTRec). The RecBole peer's figures come from
``benchmarks/results/recbole_peer.json`` (``benchmarks/recbole_peer.py``: the same split,
re-scored by the same evaluator). The script prints and writes one masked table (every
protocol) and one unmasked table (loo), and a paired bootstrap 95 % interval over users of
NDCG@10 (MTRec - best peer of the same convention), MTRec's per-user values averaged over its
seeds. "Best peer" is the peer with the highest test NDCG@10 of that convention: the strongest
opponent, so the choice can only make MTRec look worse.

Example::

    python benchmarks/bench_model.py --protocols loo random --seeds 2020 2021 2022 --threads 1
    python benchmarks/bench_model.py --tables-only     # re-read the results, print the tables
    python benchmarks/bench_model.py --tables-only --write  # ... and re-compare with the peer file
    python benchmarks/bench_model.py --dataset book-crossing --protocols random --threads 1
        # -> benchmarks/results/model-book-crossing.json (ml-100k's file is model.json)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, command, write_results  # noqa: E402
from benchmarks.recbole_peer import (  # noqa: E402
    CONVENTIONS,
    PER_USER_DIR,
    PER_USER_METRICS,
    slug,
)

TABLE_METRICS = ("ndcg@10", "recall@10", "mrr@10", "precision@10", "f1@10", "coverage@10")
SUMMARY_METRICS = (*PER_USER_METRICS, "coverage@10")
# The conventions each protocol's tables show: sequential peers exist on loo only.
TABLES = {"masked": ("loo", "random"), "unmasked": ("loo",)}


def text_embeddings(ds: Any) -> np.ndarray:
    """(n_items, 384) item text embeddings (the Content baseline and the model's item tower)."""
    from retrieval import Embedder

    return Embedder().encode([it.document() for it in ds.items])


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def evaluate_both(
    model: Any, ds: Any, split: Any, per_user_path: Path
) -> dict[str, dict[str, float]]:
    """Test metrics of one fitted model under both conventions; writes its per-user file."""
    from mtrec.evaluation.evaluator import evaluate_ranking_per_user
    from mtrec.evaluation.stats import save_per_user

    out, per_user, users = {}, {}, None
    for convention, mask in CONVENTIONS.items():
        ev = evaluate_ranking_per_user(model, ds, split, "test", mask=mask)
        out[convention] = ev.summary
        per_user[convention] = {m: ev.per_user[m] for m in PER_USER_METRICS}
        users = ev.users
    save_per_user(per_user_path, users, per_user)
    return out


def run_mtrec(
    ds: Any,
    text: np.ndarray,
    split: Any,
    protocol: str,
    seed: int,
    threads: int,
    path: Path,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Train the multi-task model with one seed (validation early stopping) and score it."""
    from mtrec.config import MTRecConfig
    from mtrec.evaluation.tasks import evaluate_tasks
    from mtrec.model.multitask import MultiTaskModel
    from mtrec.training import train_multitask

    cfg = MTRecConfig.for_protocol(protocol, ds.profile.like_threshold)
    cfg.train.seed = seed
    if threads:
        cfg.train.threads = threads
    if epochs:
        cfg.train.epochs = epochs
    model = MultiTaskModel.create(ds, cfg, text)
    load_start, t0 = loadavg(), time.perf_counter()
    result = train_multitask(
        model,
        ds,
        split.train,
        split,
        on_epoch=lambda e: print(
            f"  {protocol} seed {seed} epoch {e.epoch} valid ndcg@10="
            f"{e.valid.get('ndcg@10', 0):.4f} ({e.seconds:.1f}s)",
            file=sys.stderr,
            flush=True,
        ),
    )
    train_s = time.perf_counter() - t0
    out: dict[str, Any] = evaluate_both(model, ds, split, path)
    out.update(
        fusion=fusion_on_test(model, ds, split, seed, path),
        tasks=evaluate_tasks(model, ds, split, "test"),
        train_seconds=round(train_s, 2),
        best_epoch=result.best_epoch,
        epochs_run=len(result.epochs),
        best_valid_ndcg10=result.best_ndcg10,
        loadavg_at_start=load_start,
        loadavg_at_end=loadavg(),
        per_user_file=str(path.relative_to(ROOT)),
    )
    return out


def fusion_on_test(model: Any, ds: Any, split: Any, seed: int, path: Path) -> dict[str, Any]:
    """Engagement alone against the validation-chosen fused score on test, liked and all
    targets (issue 13, item 6); per-user values to ``<path stem>-fusion-<targets>.npz``."""
    from mtrec.evaluation.stats import save_per_user
    from mtrec.selection import fusion_comparison

    report = fusion_comparison(model, ds, split, "test", seed=2020)
    out: dict[str, Any] = {"weights": model.config.fusion.model_dump()}
    for targets, r in report.items():
        file = path.with_name(f"{path.stem}-fusion-{targets}.npz")
        save_per_user(file, r["users"], r["per_user"])
        out[targets] = {**r["summary"], "per_user_file": str(file.relative_to(ROOT))}
    return out


def fusion_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """Over seeds: engagement and fused test NDCG@10 (mean, sd) on liked and all targets, and
    the paired interval of fused - engagement with per-user values averaged over seeds."""
    from mtrec.evaluation.stats import load_per_user, paired_bootstrap

    runs = [r["fusion"] for r in entry["mtrec"]["seeds"].values() if "fusion" in r]
    if not runs:
        return {}
    out: dict[str, Any] = {"weights_per_seed": [r["weights"] for r in runs]}
    for targets in ("liked", "all"):
        sides: dict[str, list[np.ndarray]] = {"network": [], "engagement": [], "fused": []}
        users = None
        for r in runs:
            u, groups = load_per_user(ROOT / r[targets]["per_user_file"])
            if users is not None and u.tolist() != users.tolist():
                raise ValueError(f"{r[targets]['per_user_file']}: other users than seed 1")
            users = u
            for side in sides:
                if side in groups:  # "network": since the neighbour channel (2026-12-07)
                    sides[side].append(groups[side]["ndcg@10"])
        means = {side: [float(v.mean()) for v in vs] for side, vs in sides.items()}
        out[targets] = {
            "users": len(users) if users is not None else 0,
            **{
                f"{side}_ndcg@10": {
                    "mean": float(np.mean(v)),
                    "sd": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                }
                for side, v in means.items()
                if v
            },
            "paired_fused_minus_engagement": paired_bootstrap(
                np.mean(sides["fused"], axis=0), np.mean(sides["engagement"], axis=0)
            ).to_dict(),
        }
        if len(sides["network"]) == len(runs):
            out[targets]["paired_engagement_minus_network"] = paired_bootstrap(
                np.mean(sides["engagement"], axis=0), np.mean(sides["network"], axis=0)
            ).to_dict()
    return out


def mean_sd(x: dict[str, float | None]) -> str:
    return f"{x['mean']:.4f}" + (f" ± {x['sd']:.4f}" if x["sd"] is not None else "")


def print_fusion(protocols: dict[str, Any]) -> None:
    for protocol, entry in protocols.items():
        f = entry.get("fusion_summary")
        if not f:
            continue
        weights = [
            (w.get("neighbour", 0.0), w.get("neighbour_decay", 1.0), w["like"], w["rating"])
            for w in f["weights_per_seed"]
        ]
        print(
            f"{protocol}: weights (neighbour, neighbour decay, like, rating) chosen on "
            f"validation, per seed {weights}"
        )
        for targets in ("liked", "all"):
            t = f[targets]
            e, g = t["engagement_ndcg@10"], t["fused_ndcg@10"]
            iv = t["paired_fused_minus_engagement"]
            net = ""
            if "paired_engagement_minus_network" in t:
                nv = t["paired_engagement_minus_network"]
                net = (
                    f"network {mean_sd(t['network_ndcg@10'])}, engagement - network "
                    f"{nv['mean_diff']:+.4f} [95% {nv['low']:+.4f}, {nv['high']:+.4f}]; "
                )
            print(
                f"  {targets} targets ({t['users']} users): {net}engagement {mean_sd(e)}, "
                f"fused {mean_sd(g)}, fused - engagement {iv['mean_diff']:+.4f} "
                f"[95% {iv['low']:+.4f}, {iv['high']:+.4f}]"
            )


def run_baselines(
    ds: Any, text: np.ndarray, split: Any, prefix: str, seed: int
) -> dict[str, dict[str, Any]]:
    """Fit every in-project baseline on the training rows and score it both ways."""
    from mtrec.model.baselines import (
        BPRModel,
        ContentModel,
        ItemKNNModel,
        LastItemKNNModel,
        PopularityModel,
    )

    out = {}
    for m in (
        PopularityModel(),
        ItemKNNModel(),
        BPRModel(seed=seed),
        ContentModel(text, recent=20),
        LastItemKNNModel(),
    ):
        t0 = time.perf_counter()
        m.fit(ds, split.train)
        fit_s = time.perf_counter() - t0
        path = PER_USER_DIR / f"{prefix}-{m.name}.npz"
        out[m.name] = evaluate_both(m, ds, split, path)
        out[m.name].update(train_seconds=round(fit_s, 2), per_user_file=str(path.relative_to(ROOT)))
        print(f"  {m.name}: masked ndcg@10={out[m.name]['masked']['ndcg@10']:.4f}", flush=True)
    return out


def seed_stats(seeds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample sd over seeds of each convention's metrics and of the train time."""
    runs = list(seeds.values())
    mean: dict[str, dict[str, float]] = {}
    sd: dict[str, dict[str, float | None]] = {}
    for convention in CONVENTIONS:
        values = {m: [r[convention][m] for r in runs] for m in SUMMARY_METRICS}
        mean[convention] = {m: float(np.mean(v)) for m, v in values.items()}
        # A single seed has no spread: None, not 0.
        sd[convention] = {
            m: float(np.std(v, ddof=1)) if len(v) > 1 else None for m, v in values.items()
        }
    return {
        "n_seeds": len(runs),
        "mean": mean,
        "sd": sd,
        "train_seconds_mean": float(np.mean([r["train_seconds"] for r in runs])),
    }


def peer_rows(peer_doc: dict, dataset: str, protocol: str) -> dict[str, dict[str, Any]]:
    """The finished, re-scored RecBole peers of one dataset and protocol."""
    out = {}
    for e in peer_doc.get("results", {}).values():
        if (e.get("dataset"), e.get("protocol")) != (dataset, protocol):
            continue
        if e.get("status") == "ok" and "metrics" in e:
            out[e["model"]] = e
    return out


def paired_vs(
    mtrec_files: list[str], other_file: str, convention: str, n_boot: int = 10_000
) -> dict[str, Any]:
    """Bootstrap interval of per-user NDCG@10, MTRec (seed mean, and each seed) - other."""
    from mtrec.evaluation.stats import load_per_user, pair_by_user, paired_bootstrap

    users_o, other = load_per_user(ROOT / other_file)
    per_seed, values = [], []
    users_m = None
    for f in mtrec_files:
        users, groups = load_per_user(ROOT / f)
        if users_m is not None and users.tolist() != users_m.tolist():
            raise ValueError(f"{f}: different users from the other seeds")
        users_m = users
        values.append(groups[convention]["ndcg@10"])
        _, a, b = pair_by_user(users, values[-1], users_o, other[convention]["ndcg@10"])
        per_seed.append(paired_bootstrap(a, b, n_boot=n_boot).to_dict())
    _, a, b = pair_by_user(users_m, np.mean(values, axis=0), users_o, other[convention]["ndcg@10"])
    return {"seed_mean": paired_bootstrap(a, b, n_boot=n_boot).to_dict(), "per_seed": per_seed}


def compare(entry: dict[str, Any], peers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Best peer per convention and the paired intervals against it and the recency floor."""
    files = [s["per_user_file"] for s in entry["mtrec"]["seeds"].values()]
    out: dict[str, Any] = {}
    for convention in CONVENTIONS:
        ranked = sorted(peers, key=lambda m: -peers[m]["metrics"][convention]["test"]["ndcg@10"])
        row: dict[str, Any] = {}
        if ranked:
            best = ranked[0]
            best_ndcg = peers[best]["metrics"][convention]["test"]["ndcg@10"]
            mean = entry["mtrec"]["mean"][convention]["ndcg@10"]
            row.update(
                best_peer=best,
                best_peer_ndcg10=best_ndcg,
                ratio=mean / best_ndcg if best_ndcg else None,
                paired_ndcg10=paired_vs(files, peers[best]["per_user_file"], convention),
            )
        floor = entry["baselines"].get("LastItemKNN")
        if floor:
            row["ratio_to_recency_floor"] = (
                entry["mtrec"]["mean"][convention]["ndcg@10"] / floor[convention]["ndcg@10"]
            )
            row["paired_ndcg10_vs_recency_floor"] = paired_vs(
                files, floor["per_user_file"], convention
            )
        knn = entry["baselines"].get("ItemKNN")
        if knn:  # the neighbour channel is an ItemKNN: does the model add anything over it?
            row["paired_ndcg10_vs_project_itemknn"] = paired_vs(
                files, knn["per_user_file"], convention
            )
        out[convention] = row
    return out


def table(protocols: dict[str, Any], peer_doc: dict, dataset: str, convention: str) -> list[dict]:
    """Rows of one convention's table: MTRec (mean +- sd), baselines, peers, per protocol."""
    rows = []
    for protocol in TABLES[convention]:
        entry = protocols.get(protocol)
        if not entry:
            continue
        st = entry["mtrec"]
        rows.append(
            {
                "protocol": protocol,
                "model": f"MTRec ({st['n_seeds']} seeds)",
                **{m: st["mean"][convention][m] for m in TABLE_METRICS},
                "sd": {m: st["sd"][convention][m] for m in TABLE_METRICS},
                "train_seconds": st["train_seconds_mean"],
            }
        )
        for name, b in entry["baselines"].items():
            rows.append(
                {
                    "protocol": protocol,
                    "model": f"mtrec {name}",
                    **{m: b[convention][m] for m in TABLE_METRICS},
                    "train_seconds": b["train_seconds"],
                }
            )
        for name, e in sorted(peer_rows(peer_doc, dataset, protocol).items()):
            own = e["check"] if e["recbole_own"]["convention"] == convention else None
            label = f"RecBole {name}"
            if e.get("stopped_by_train_budget"):  # an under-trained peer: say so in the row
                label += f" (stopped by its time budget after {e.get('epochs_run')} epochs)"
            rows.append(
                {
                    "protocol": protocol,
                    "model": label,
                    **{m: e["metrics"][convention]["test"][m] for m in TABLE_METRICS},
                    "train_seconds": e.get("train_seconds"),
                    "epochs_run": e.get("epochs_run"),
                    "recbole_own_ndcg10": e["test_result"]["ndcg@10"] if own else None,
                }
            )
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:  # e.g. the unmasked (loo) table of a dataset without timestamps
        return
    print(f"\n{title}")
    head = "| protocol | model | " + " | ".join(TABLE_METRICS) + " | train s |"
    print(head)
    print("|" + "---|" * (len(TABLE_METRICS) + 3))
    for r in rows:
        cells = []
        for m in TABLE_METRICS:
            sd = r.get("sd", {}).get(m)
            cells.append(f"{r[m]:.4f}" + (f" ± {sd:.4f}" if sd is not None else ""))
        t = r.get("train_seconds")
        t_cell = f"{t:.1f}" if t is not None else "-"
        print(f"| {r['protocol']} | {r['model']} | " + " | ".join(cells) + f" | {t_cell} |")


def print_comparisons(protocols: dict[str, Any]) -> None:
    for protocol, entry in protocols.items():
        for convention, row in entry.get("comparison", {}).items():
            if convention == "unmasked" and protocol not in TABLES["unmasked"]:
                continue
            if "paired_ndcg10" in row:
                iv = row["paired_ndcg10"]["seed_mean"]
                print(
                    f"{protocol} {convention}: MTRec - {row['best_peer']} NDCG@10 = "
                    f"{iv['mean_diff']:+.4f} [95% {iv['low']:+.4f}, {iv['high']:+.4f}] "
                    f"(ratio {row['ratio']:.3f}x, {iv['n_users']} users)"
                )
            if "paired_ndcg10_vs_recency_floor" in row:
                iv = row["paired_ndcg10_vs_recency_floor"]["seed_mean"]
                print(
                    f"{protocol} {convention}: MTRec - recency floor NDCG@10 = "
                    f"{iv['mean_diff']:+.4f} [95% {iv['low']:+.4f}, {iv['high']:+.4f}] "
                    f"(ratio {row['ratio_to_recency_floor']:.3f}x)"
                )
            if "paired_ndcg10_vs_project_itemknn" in row:
                iv = row["paired_ndcg10_vs_project_itemknn"]["seed_mean"]
                print(
                    f"{protocol} {convention}: MTRec - mtrec ItemKNN NDCG@10 = "
                    f"{iv['mean_diff']:+.4f} [95% {iv['low']:+.4f}, {iv['high']:+.4f}]"
                )


def merged_entry(
    kept: dict[str, Any],
    seeds: dict[str, Any],
    args: argparse.Namespace,
    ds: Any,
    text: np.ndarray,
    split: Any,
    prefix: str,
) -> dict[str, Any]:
    """A protocol entry whose seeds are the kept ones plus this run's (``--add-seeds``)."""
    entry: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": args.threads,
        "epochs_cap": args.epochs,
        "mtrec": {"seeds": dict(sorted(seeds.items())), **seed_stats(seeds)},
    }
    if args.no_baselines:
        entry["baselines"] = kept.get("baselines", {})
        entry["baselines_date"] = kept.get("baselines_date", kept.get("date"))
    else:
        entry["baselines"] = run_baselines(ds, text, split, prefix, args.seeds[0])
        entry["baselines_date"] = entry["date"]
    return entry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--protocols", nargs="+", default=["loo", "random"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads for MTRec training (0 = follow the free cores, the default)",
    )
    ap.add_argument(
        "--epochs", type=int, default=None, help="cap MTRec's epochs (smoke runs; recorded)"
    )
    ap.add_argument(
        "--no-baselines", action="store_true", help="keep each protocol's last baseline runs"
    )
    ap.add_argument(
        "--baselines-only",
        action="store_true",
        help="refit and score the baselines; keep each protocol's last MTRec runs",
    )
    ap.add_argument(
        "--add-seeds",
        action="store_true",
        help="merge these seeds into the protocol's recorded MTRec runs (so several processes "
        "can each run one seed); each seed records its own command",
    )
    ap.add_argument("--tables-only", action="store_true", help="no training: re-read and print")
    ap.add_argument(
        "--write",
        action="store_true",
        help="with --tables-only: also write the comparisons and tables against the peer file "
        "as it is now (a peer run that finished later); every run keeps its own date and "
        "command, the file's top-level date and command become this comparison's",
    )
    args = ap.parse_args()

    # One results file per dataset: model.json (ml-100k, the headline), model-<dataset>.json.
    name = "model" if args.dataset == "ml-100k" else f"model-{slug(args.dataset)}"
    previous = RESULTS / f"{name}.json"
    kept = json.loads(previous.read_text()) if previous.is_file() else {}
    # Protocols not run this time keep their last figures (each carries its own date); the
    # schema before per-user results is dropped.
    protocols = {
        p: e for p, e in kept.get("protocols", {}).items() if "seeds" in e.get("mtrec", {})
    }
    peer_path = RESULTS / "recbole_peer.json"
    peer_doc = json.loads(peer_path.read_text()) if peer_path.is_file() else {}
    results: dict[str, Any] = {
        "dataset": kept.get("dataset", args.dataset),
        "embed_seconds": kept.get("embed_seconds"),
    }
    if not args.tables_only:
        from mtrec.data import load_dataset
        from mtrec.evaluation import split_dataset

        ds = load_dataset(args.dataset)
        dataset = slug(ds.name)
        t0 = time.perf_counter()
        text = text_embeddings(ds)
        results.update(dataset=dataset, embed_seconds=time.perf_counter() - t0)
        for protocol in args.protocols:
            try:
                split = split_dataset(ds, protocol, seed=2020)
            except ValueError as exc:  # e.g. loo on a dataset without timestamps
                print(f"{protocol}: skipped ({exc})", flush=True)
                continue
            prefix = f"mtrec-{dataset}-{protocol}"
            if args.baselines_only:
                if protocol not in protocols:
                    raise SystemExit(f"--baselines-only: no MTRec runs for {protocol} to keep")
                entry = protocols[protocol]
                entry["baselines"] = run_baselines(ds, text, split, prefix, args.seeds[0])
                entry["baselines_date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                write_results(name, {**results, "protocols": protocols})
                continue
            seeds = {}
            for seed in args.seeds:
                path = PER_USER_DIR / f"{prefix}-MTRec-seed{seed}.npz"
                seeds[str(seed)] = run_mtrec(
                    ds, text, split, protocol, seed, args.threads, path, args.epochs
                )
                seeds[str(seed)]["command"] = command()
                print(f"  MTRec seed {seed}: {seeds[str(seed)]['masked']['ndcg@10']:.4f}")
            if args.add_seeds:
                # Seeds run in parallel processes: merge into what the file holds *now*.
                with FileLock(str(RESULTS / f"{name}.json.lock")):
                    now = RESULTS / f"{name}.json"
                    held = json.loads(now.read_text()) if now.is_file() else {}
                    kept_entry = held.get("protocols", {}).get(protocol, {})
                    for s_, r in kept_entry.get("mtrec", {}).get("seeds", {}).items():
                        seeds.setdefault(s_, r)
                    protocols = dict(held.get("protocols", {}))
                    protocols[protocol] = merged_entry(
                        kept_entry, seeds, args, ds, text, split, prefix
                    )
                    results["protocols"] = protocols
                    write_results(name, results)
                continue
            last = protocols.get(protocol, {})
            entry: dict[str, Any] = {
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "threads": args.threads,
                "epochs_cap": args.epochs,
                "mtrec": {"seeds": seeds, **seed_stats(seeds)},
            }
            if args.no_baselines:  # the baselines do not change with MTRec: keep the last ones
                entry["baselines"] = last.get("baselines", {})
                entry["baselines_date"] = last.get("baselines_date", last.get("date"))
            else:
                entry["baselines"] = run_baselines(ds, text, split, prefix, args.seeds[0])
            protocols[protocol] = entry
            results["protocols"] = protocols
            write_results(name, results)  # after each protocol: a partial run keeps numbers
    with FileLock(str(RESULTS / f"{name}.json.lock")):  # the tables read every merged seed
        if args.add_seeds and (RESULTS / f"{name}.json").is_file():
            held = json.loads((RESULTS / f"{name}.json").read_text())
            protocols = held.get("protocols", protocols)
        finish(results, protocols, peer_doc, name, write=args.write or not args.tables_only)


def finish(
    results: dict[str, Any], protocols: dict[str, Any], peer_doc: dict, name: str, write: bool
) -> None:
    """Compare each protocol with its peers, print the tables and (unless only reading, so the
    file keeps the date, command and load of the run that measured it) write the results."""
    dataset = results["dataset"]
    for protocol, entry in protocols.items():
        entry["comparison"] = compare(entry, peer_rows(peer_doc, dataset, protocol))
        entry["fusion_summary"] = fusion_summary(entry)
    results["protocols"] = protocols
    results["tables"] = {c: table(protocols, peer_doc, dataset, c) for c in TABLES}
    results["peer_file_date"] = (peer_doc.get("invocations") or [{}])[-1].get("date")
    for convention, rows in results["tables"].items():
        print_table(f"{convention} ({', '.join(TABLES[convention])}), test, {dataset}", rows)
    print()
    print_comparisons(protocols)
    print()
    print_fusion(protocols)
    if write:
        path = write_results(name, results)
        print(f"\nwrote {path}", flush=True)


if __name__ == "__main__":
    main()
