#!/usr/bin/env python3
"""RecBole 1.2.1 peer benchmark on the ml-100k atomic files shipped inside the RecBole wheel.

Installs RecBole into its own venv (default ``benchmarks/.work/venv-recbole``, git-ignored), then
runs one subprocess per (model, protocol) with the venv's python
(``benchmarks/recbole_peer_runner.py``) and merges the results into
``benchmarks/results/recbole_peer.json``.

Protocols (everything else is RecBole's default, plus the fixed settings in ``BASE_CONFIG``):
  loo  eval_args {split: {LS: valid_and_test}, group_by: user, order: TO, mode: full}
  rs   eval_args {split: {RS: [0.8, 0.1, 0.1]}, group_by: user, order: RO, mode: full}

Examples:
  python benchmarks/recbole_peer.py --setup-only
  python benchmarks/recbole_peer.py --models Pop,BPR,ItemKNN --protocols loo,rs
  nohup python benchmarks/recbole_peer.py --models LightGCN,GRU4Rec,SASRec --epochs 50 \
      --max-minutes 15 > benchmarks/.work/peer.log 2>&1 &

Only the standard library is used here; torch/RecBole live in the venv.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNNER = HERE / "recbole_peer_runner.py"
DEFAULT_WORK = HERE / ".work"
DEFAULT_OUTPUT = HERE / "results" / "recbole_peer.json"

RECBOLE_VERSION = "1.2.1"
# Exactly this spec: pip takes the CPU build of 2.13.0 from local disk; any other torch spec
# (or a dependency that forces a different torch) pulls a multi-GB CUDA build.
TORCH_SPEC = "torch==2.13.0"
# What `import recbole.quick_start` + run_recbole need, found by trial in a fresh venv. ray is
# left out on purpose (only hyper-tuning uses it; the runner stubs `ray`): recbole's
# `ray<=2.6.3` import needs pkg_resources, i.e. setuptools<70, which conflicts with torch 2.13's
# `setuptools>=77.0.3` -- a plain `pip install recbole==1.2.1` resolves that by downgrading
# torch to a CUDA 2.12 build. plotly/hyperopt are only imported by hyper-tuning too.
RECBOLE_DEPS = [
    "numpy",
    "scipy",
    "pandas",
    "tqdm",
    "colorlog==4.7.2",
    "colorama==0.4.4",
    "scikit-learn",
    "pyyaml",
    "tensorboard",  # trainer imports torch.utils.tensorboard
    "thop",  # run_recbole calls get_flops
    "texttable",  # recbole.utils
    "psutil",  # get_environment
]
VENV_MARKER = ".recbole_peer_ready.json"
VERSIONS_CODE = """
import json, importlib.metadata as m
out = {}
for p in ["recbole", "torch", "numpy", "scipy", "pandas", "scikit-learn", "thop", "tensorboard",
          "setuptools", "ray"]:
    try:
        out[p] = m.version(p)
    except m.PackageNotFoundError:
        out[p] = None
print(json.dumps(out))
"""

# How RecBole 1.2.1 evaluates (read from the installed source; paths relative to recbole/).
# Written into the results JSON so the numbers and the protocol travel together.
RECBOLE_PROTOCOL = {
    "ordering": (
        "data/dataset/dataset.py Dataset.build(): order RO -> self.shuffle() = "
        "Interaction.shuffle(): torch.randperm(self.length) (torch RNG, seeded by init_seed(2020) "
        "just before create_dataset); order TO -> self.sort(by=self.time_field) = "
        "Interaction.sort(): index = np.argsort(key, kind='stable') (data/interaction.py). "
        "The sort is stable, so timestamp ties keep the row order of ml-100k.inter (loading, "
        "remapping via pd.factorize and filtering do not reorder rows). On ml-100k 75,772 of "
        "100,000 rows share (user, timestamp) with another row, and 415 of 943 users have their "
        "valid and test item at the same timestamp: file order decides which is which."
    ),
    "loo_split": (
        "Dataset.leave_one_out(group_by=uid, 'valid_and_test') -> "
        "_split_index_by_leave_one_out(grouped_index, leave_one_num=2): per user (rows in the "
        "sorted order, users in order of first appearance, _grouped_index), "
        "legal_leave_one_num = min(2, n - 1); train = index[:n - legal], then the next row is "
        "valid and the last row is test. Every ml-100k user has >= 20 rows: 1 valid + 1 test each."
    ),
    "rs_split": (
        "Dataset.split_by_ratio([0.8, 0.1, 0.1], group_by=uid) -> per user (rows in shuffled "
        "order) _calcu_split_ids(n, ratios): cnt = [int(r * n) for r in ratios]; "
        "cnt[0] = n - sum(cnt[1:]); then for i in 1..len-1: if cnt[0] <= 1: break; "
        "if 0 < ratios[-i] * n < 1: cnt[-i] += 1; cnt[0] -= 1. So valid = test = int(0.1 * n) "
        "(== n // 10 for every n < 2000), train = n - 2 * (n // 10); train gets the first rows of "
        "the user's shuffled rows, then valid, then test. The +1 rule only fires for n < 10."
    ),
    "sequential_models": (
        "data/dataset/sequential_dataset.py SequentialDataset.build() raises ValueError unless "
        "order == 'TO' (so no rs). data_augmentation() (called from _change_feat_format, before "
        "the split) sorts by [uid, time] (stable) and makes one example per interaction except "
        "each user's first, with item_id_list = the previous <= MAX_ITEM_LIST_LENGTH (50) items; "
        "LS then takes the last example per user as test and the one before as valid, so the test "
        "input sequence contains the validation item."
    ),
    "full_ranking_masks": (
        "trainer/trainer.py Trainer._full_sort_batch_eval(): scores[:, 0] = -inf (padding item) "
        "and, if history_index is not None, scores[history_index] = -inf. "
        "data/dataloader/general_dataloader.py FullSortEvalDataLoader: general models: "
        "history_item = used_item - positive_item (_set_user_property), with used_item = "
        "sampler.used_ids of the phase; sampler/sampler.py Sampler.get_used_ids() accumulates "
        "train, then train+valid, then train+valid+test. So at validation the mask is the "
        "user's train items (test items are not masked); at test it is train + valid items "
        "(the validation item IS masked at test), minus the phase's own positives. Sequential "
        "models: collate_fn returns history None -> nothing but item 0 is masked (items in the "
        "input sequence can be recommended); quick_start_config/sequential.yaml also sets "
        "repeatable: True."
    ),
    "metrics": (
        "evaluator/collector.py Collector.eval_batch_collect(): _, topk_idx = "
        "torch.topk(scores, max(topk)=20, dim=-1); pos_idx = gather(pos_matrix, topk_idx); "
        "pos_len = number of positives of the row. Ties are broken by torch.topk's CPU kernel "
        "(neither stable nor by item id). evaluator/metrics.py: Hit@k = any hit in top k; "
        "MRR@k = 1/(rank of the first hit) (argmax of pos_index); Recall@k = hits@k / pos_len "
        "(full pos_len, not min(k, pos_len)); NDCG@k = sum_{hits} 1/log2(rank+1) / "
        "sum_{i<=min(pos_len,k)} 1/log2(i+1). evaluator/base_metric.py topk_result(): mean over "
        "rows (users; one row per test example for sequential models), then "
        "round(., metric_decimal_place=4)."
    ),
    "pop_quirk": (
        "model/general_recommender/pop.py Pop.calculate_loss(): self.item_cnt[item, :] = "
        "self.item_cnt[item, :] + 1 over each training batch, where the batch holds the positives "
        "and the uniformly sampled negatives (Pop is POINTWISE) and duplicate indices do not "
        "accumulate. item_cnt is therefore the number of batches (96 on loo) in which the item "
        "appears, not its popularity: 7 items tie at 96, 18 at 95, ... so Pop's loo result is "
        "decided by torch.topk's tie order. Re-scoring our trained Pop with a stable "
        "low-id-first tie break gives loo NDCG@10 0.0406, high-id-first 0.0315, true train "
        "popularity 0.0449; torch 2.13.0's topk gives 0.0354."
    ),
}

ALL_MODELS = ["Pop", "BPR", "ItemKNN", "LightGCN", "GRU4Rec", "SASRec"]
SEQUENTIAL_MODELS = {"GRU4Rec", "SASRec"}
PROTOCOLS = {
    "loo": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO", "mode": "full"},
    "rs": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
}
# Fixed for every run. RecBole's own defaults (properties/overall.yaml) are topk [10],
# metrics [Recall, MRR, NDCG, Hit, Precision] and valid_metric MRR@10; we use the values below.
BASE_CONFIG = {
    "seed": 2020,
    "reproducibility": True,
    "use_gpu": False,
    "show_progress": False,
    "topk": [5, 10, 20],
    "metrics": ["Recall", "MRR", "NDCG", "Hit"],
    "valid_metric": "NDCG@10",
    "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
}
# Model-specific settings RecBole 1.2.1 requires: Config._set_default_parameters raises
# "train_neg_sample_args [...] should be None when the loss_type is CE" for sequential CE models.
MODEL_CONFIG = {
    "GRU4Rec": {"train_neg_sample_args": None},
    "SASRec": {"train_neg_sample_args": None},
}
DATA_FILES = ["ml-100k.inter", "ml-100k.item", "ml-100k.user"]


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _pip(venv: Path, *args: str) -> None:
    cmd = [str(venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", *args]
    log("$ " + shlex.join(cmd))
    subprocess.run(cmd, check=True)


def _venv_query(venv: Path, code: str) -> str:
    out = subprocess.run(
        [str(venv_python(venv)), "-c", code], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def ensure_venv(venv: Path, work: Path) -> dict:
    """Create the venv and install torch + RecBole once; returns installed versions."""
    marker = venv / VENV_MARKER
    wanted = {"torch": TORCH_SPEC, "recbole": RECBOLE_VERSION, "deps": RECBOLE_DEPS}
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("wanted") == wanted:
            return info
    if not venv_python(venv).exists():
        log(f"creating venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    work.mkdir(parents=True, exist_ok=True)
    constraints = work / "recbole_constraints.txt"
    constraints.write_text(TORCH_SPEC + "\n")  # nothing below may move torch
    _pip(venv, TORCH_SPEC)
    _pip(venv, "--no-deps", f"recbole=={RECBOLE_VERSION}")
    _pip(venv, "-c", str(constraints), *RECBOLE_DEPS)
    torch_version = _venv_query(venv, "import torch; print(torch.__version__)")
    if not torch_version.startswith("2.13.0") or "+cu" in torch_version:
        raise SystemExit(f"unexpected torch in venv: {torch_version} (expected 2.13.0 CPU)")
    versions = json.loads(_venv_query(venv, VERSIONS_CODE))
    info = {
        "wanted": wanted,
        "versions": versions,
        "python": _venv_query(venv, "import platform; print(platform.python_version())"),
    }
    marker.write_text(json.dumps(info, indent=1))
    return info


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_data(venv: Path, work: Path) -> tuple[Path, dict]:
    """Copy ml-100k.{inter,item,user} out of the installed wheel into work/data/ml-100k."""
    pkg = Path(_venv_query(venv, "import os, recbole; print(os.path.dirname(recbole.__file__))"))
    src = pkg / "dataset_example" / "ml-100k"
    data_root = work / "data"
    dst = data_root / "ml-100k"
    dst.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name in DATA_FILES:
        s, d = src / name, dst / name
        if not d.exists() or sha256(d) != sha256(s):
            shutil.copyfile(s, d)
        digests[name] = sha256(d)
    return data_root, digests


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python_host": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = list(os.getloadavg())
    return info


def read_progress(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    return events


def run_one(
    model: str,
    protocol: str,
    args: argparse.Namespace,
    venv: Path,
    work: Path,
    data_root: Path,
) -> dict:
    tag = f"{model}-{protocol}"
    run_dir = work / "runs" / tag
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True)
    config_dict = json.loads(json.dumps(BASE_CONFIG))
    config_dict["eval_args"] = json.loads(json.dumps(PROTOCOLS[protocol]))
    config_dict["state"] = args.state
    config_dict["checkpoint_dir"] = str(run_dir / "checkpoints")
    config_dict.update(MODEL_CONFIG.get(model, {}))
    if args.epochs is not None:
        config_dict["epochs"] = args.epochs
    spec = {
        "model": model,
        "dataset": "ml-100k",
        "data_path": str(data_root),
        "config_dict": config_dict,
        "progress_path": str(run_dir / "progress.jsonl"),
        "torch_threads": args.threads,
        "train_budget_seconds": args.train_budget_minutes * 60
        if args.train_budget_minutes
        else None,
    }
    spec_path, result_path, log_path = (
        run_dir / "spec.json",
        run_dir / "result.json",
        run_dir / "stdout.log",
    )
    spec_path.write_text(json.dumps(spec, indent=1))
    base = {
        "model": model,
        "protocol": protocol,
        "eval_args": PROTOCOLS[protocol],
        "epochs_cap": args.epochs,
        "max_minutes": args.max_minutes,
        "train_budget_minutes": args.train_budget_minutes,
        "threads": args.threads,
        "log": str(log_path.relative_to(REPO)) if log_path.is_relative_to(REPO) else str(log_path),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):
        base["loadavg_at_start"] = list(os.getloadavg())

    if model in SEQUENTIAL_MODELS and PROTOCOLS[protocol]["order"] != "TO":
        # recbole/data/dataset/sequential_dataset.py SequentialDataset.build():
        #   if ordering_args != "TO": raise ValueError("The ordering args for sequential
        #   recommendation has to be 'TO'")
        return {
            **base,
            "status": "skipped",
            "reason": "RecBole 1.2.1 SequentialDataset.build() requires eval_args.order == 'TO'; "
            "the rs protocol uses RO, so RecBole refuses sequential models on it.",
            "config_dict": config_dict,
        }

    timeout = args.max_minutes * 60 if args.max_minutes else None
    cmd = [str(venv_python(venv)), str(RUNNER), str(spec_path), str(result_path)]
    log(f"run {tag}: {shlex.join(cmd)}" + (f" (timeout {timeout:.0f}s)" if timeout else ""))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=run_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        interrupted = None
        try:
            rc = proc.wait(timeout=timeout)
            timed_out = False
        except Interrupted as exc:
            # This script was signalled: stop the child too and keep what it had logged.
            interrupted, timed_out = exc.signame, False
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    wall = round(time.perf_counter() - t0, 3)
    base["wall_seconds"] = wall
    with contextlib.suppress(OSError):
        base["loadavg_at_end"] = list(os.getloadavg())
    if not timed_out and not interrupted and rc == 0 and result_path.exists():
        result = json.loads(result_path.read_text())
        return {**base, **result}
    progress = read_progress(run_dir / "progress.jsonl")
    valid = [e for e in progress if e.get("event") == "valid"]
    tail = log_path.read_text(errors="replace").splitlines()[-15:]
    return {
        **base,
        "status": "timed_out" if timed_out else ("interrupted" if interrupted else "failed"),
        **({"signal": interrupted} if interrupted else {}),
        "returncode": rc,
        "epochs_validated_before_stop": len(valid),
        "valid_curve": [[e["epoch"], e["valid_score"]] for e in valid],
        "best_valid_score_before_stop": max((e["valid_score"] for e in valid), default=None),
        "log_tail": tail,
        "config_dict": config_dict,
    }


class Interrupted(Exception):
    """This script got SIGTERM/SIGINT/SIGHUP while a run was in progress."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def summarize(entry: dict) -> str:
    if entry.get("status") != "ok":
        return f"{entry['model']:9s} {entry['protocol']:4s} {entry.get('status')}"
    t = entry["test_result"]
    return (
        f"{entry['model']:9s} {entry['protocol']:4s} ndcg@10={t['ndcg@10']:.4f} "
        f"recall@10={t['recall@10']:.4f} mrr@10={t['mrr@10']:.4f} hit@10={t['hit@10']:.4f} "
        f"train={entry['train_seconds']:.1f}s epochs={entry['epochs_run']}"
    )


def merge_output(path: Path, header: dict, entries: list[dict], new_invocation: bool) -> int:
    """Merge entries into the output file; returns the index of the current invocation."""
    doc: dict = {}
    if path.exists():
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads(path.read_text())
    doc.setdefault("results", {})
    doc.setdefault("invocations", [])
    for key in (
        "benchmark",
        "notes",
        "protocols",
        "base_config",
        "model_config",
        "recbole_protocol",
    ):
        doc[key] = header[key]
    if new_invocation:
        doc["invocations"].append(header["invocation"])
    index = len(doc["invocations"]) - 1
    for e in entries:
        e["invocation_index"] = index
        if e.get("status") == "interrupted":
            # Killed from outside: keep the partial curve, but never replace a result.
            doc.setdefault("interrupted_runs", []).append(e)
            continue
        doc["results"][f"{e['model']}/{e['protocol']}"] = e
    doc["results"] = dict(sorted(doc["results"].items()))
    doc["table"] = [
        {
            "model": e["model"],
            "protocol": e["protocol"],
            "status": e.get("status"),
            **(
                {
                    "ndcg@10": e["test_result"]["ndcg@10"],
                    "recall@10": e["test_result"]["recall@10"],
                    "mrr@10": e["test_result"]["mrr@10"],
                    "hit@10": e["test_result"]["hit@10"],
                    "best_valid_ndcg@10": e["best_valid_score"],
                    "train_seconds": e["train_seconds"],
                    "epochs_run": e["epochs_run"],
                    "epochs_cap": e.get("epochs_cap"),
                }
                if e.get("status") == "ok"
                else {}
            ),
        }
        for e in doc["results"].values()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    return index


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(ALL_MODELS), help="comma list")
    p.add_argument("--protocols", default="loo,rs", help="comma list of loo,rs")
    p.add_argument("--epochs", type=int, default=None, help="cap RecBole's epochs (default 300)")
    p.add_argument(
        "--max-minutes", type=float, default=None, help="kill a run after this many minutes"
    )
    p.add_argument(
        "--train-budget-minutes",
        type=float,
        default=None,
        help="soft cap: stop training at the first validation after this many minutes and "
        "test the best checkpoint so far (recorded as stopped_by_train_budget)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/OpenMP threads per run (default 1: on the shared 2-core box, 2 threads "
        "made a GRU4Rec step ~8x slower through oversubscription; 0 = torch default)",
    )
    p.add_argument("--venv", type=Path, default=DEFAULT_WORK / "venv-recbole")
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    p.add_argument("--state", default="INFO", help="RecBole logging state (INFO/WARNING)")
    p.add_argument("--note", default=None, help="free text stored with this invocation")
    p.add_argument("--setup-only", action="store_true", help="install venv + data, then exit")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    for m in args.models:
        if m not in ALL_MODELS:
            p.error(f"unknown model {m!r}; choose from {ALL_MODELS}")
    for x in args.protocols:
        if x not in PROTOCOLS:
            p.error(f"unknown protocol {x!r}; choose from {sorted(PROTOCOLS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work_dir.resolve()
    venv = args.venv.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env_info = ensure_venv(venv, work)
    data_root, digests = ensure_data(venv, work)
    log(f"venv ready: {env_info['versions']}; data in {data_root}")
    if args.setup_only:
        return 0
    invocation = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "cwd": os.getcwd(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "venv_python": env_info.get("python"),
        "versions": env_info["versions"],
        "data_sha256": digests,
        "models": args.models,
        "protocols": args.protocols,
        "epochs_cap": args.epochs,
        "max_minutes": args.max_minutes,
        "train_budget_minutes": args.train_budget_minutes,
        "threads": args.threads,
        "note": args.note,
        "argv": sys.argv,
        "python": sys.executable,
    }
    header = {
        "benchmark": f"RecBole {RECBOLE_VERSION} on ml-100k (atomic files from the wheel)",
        "notes": [
            "One subprocess per (model, protocol), running benchmarks/recbole_peer_runner.py, "
            "which mirrors recbole.quick_start.run_recbole step by step (same seeding, get_flops, "
            "fit(saved=True), evaluate(load_best_model=True)).",
            "Config = RecBole 1.2.1 defaults + base_config + model_config + protocol eval_args; "
            "valid_metric NDCG@10 (RecBole's own default would be MRR@10), topk [5,10,20], "
            "metrics Recall/MRR/NDCG/Hit; metric_decimal_place 4 (RecBole default).",
            "epochs_cap: value passed as RecBole 'epochs' (null = RecBole default 300 with "
            "stopping_step 10 early stopping). max_minutes: wall-clock kill switch per run "
            "(status timed_out, no test result). train_budget_minutes: soft cap -- training "
            "stops at the first validation past it and the best checkpoint is tested "
            "(stopped_by_train_budget true); such numbers are under-trained peers.",
            "train_seconds = wall time of trainer.fit (includes per-epoch validation). The "
            "machine has 2 cores shared with other work (tests), so timings are noisy; "
            "loadavg at start/end of each run is recorded. threads: torch/OMP threads per run "
            "(with 2 threads and other processes on the box a GRU step took ~17 s vs ~2 s with "
            "1 thread, so 1 is the default).",
            "Sequential models (GRU4Rec, SASRec) are skipped on rs: RecBole refuses order RO "
            "for sequential datasets.",
            "Compatibility shims (see each result's 'shims'): numpy-2 aliases, torch.load "
            "weights_only=False, scipy dok_matrix._update, ray stub (ray not installed).",
        ],
        "protocols": PROTOCOLS,
        "base_config": BASE_CONFIG,
        "model_config": MODEL_CONFIG,
        "recbole_protocol": RECBOLE_PROTOCOL,
        "invocation": invocation,
    }
    merge_output(args.output, header, [], new_invocation=True)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    entries = []
    for model in args.models:
        for protocol in args.protocols:
            entry = run_one(model, protocol, args, venv, work, data_root)
            entries.append(entry)
            log(summarize(entry))
            # Written after every run so a long background job leaves partial results behind.
            merge_output(args.output, header, [entry], new_invocation=False)
            if entry.get("status") == "interrupted":
                log(f"stopping: got {entry['signal']}")
                return 1
    for e in entries:
        print(summarize(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
