#!/usr/bin/env python3
"""RecBole 1.2.1 peer on mtrec's own split, scored by mtrec's evaluator under both conventions.

For each protocol, mtrec's split (``mtrec.evaluation.split_dataset`` of the dataset
``mtrec.data.load_dataset`` loads: ``ml-100k``, ``book-crossing``, a path) is exported to RecBole
atomic *benchmark* files (``benchmark_filename: [train, valid, test]``: RecBole loads the three
files as the three phases and splits nothing itself). One subprocess per (model, protocol) runs
``benchmarks/recbole_peer_runner.py`` with the RecBole venv's python: RecBole trains the model
with its defaults (300 epochs, early stopping after 10 validations without a better valid
NDCG@10), reports its own test figure, and dumps the best model's full-sort score matrices of
the valid and test phases. This process then scores those matrices with mtrec's evaluator
(``mtrec.evaluation.evaluate_ranking_per_user``: the same candidates, metrics and random
tie-breaking as every mtrec model) under both conventions:

  masked    earlier-phase items excluded (train at valid; train + valid at test), as RecBole's
            general models (mtrec ``mask="history"``)
  unmasked  nothing excluded, as RecBole's sequential models (mtrec ``mask="none"``)

and checks the re-scored figure of the convention RecBole itself used for the model against
RecBole's own (``check`` in each result). Per-user test metrics go to
``benchmarks/results/per_user/recbole-<dataset>-<protocol>-<model>.npz`` (users keyed by token),
so a bench can pair users.

Sequential models (GRU4Rec, SASRec) read benchmark files without RecBole's data augmentation
(SequentialDataset skips it when benchmark_filename is set), so the export writes the augmented
examples itself, exactly as RecBole's augmentation + LS split would: one example per interaction
but each user's first, input = the previous <= 50 items in time order; the valid example's input
is the train items and the test example's input the train items plus the valid item.

Examples:
  python benchmarks/recbole_peer.py --setup-only
  python benchmarks/recbole_peer.py --check-split --models none
  nohup nice -n 10 python benchmarks/recbole_peer.py \
      --models SASRec,GRU4Rec,LightGCN,Pop,ItemKNN,BPR --protocols loo,random \
      > benchmarks/.work/peer.log 2>&1 &
  python benchmarks/recbole_peer.py --rescore-only --models Pop,BPR --protocols loo

Run it with the project's python (it imports mtrec for the split and the metrics); torch and
RecBole live in their own venv (default ``benchmarks/.work/venv-recbole``, git-ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RUNNER = HERE / "recbole_peer_runner.py"
DEFAULT_WORK = HERE / ".work"
DEFAULT_OUTPUT = HERE / "results" / "recbole_peer.json"
PER_USER_DIR = HERE / "results" / "per_user"
SCHEMA = 2

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
    # pandas 3 changed Series.agg(len) from per element to the whole Series; RecBole 1.2.1's
    # token_seq remapping (Dataset._remap, SequentialDataset._benchmark_presets) relies on the
    # per-element behaviour, so sequential benchmark files fail to load under pandas 3.
    "pandas<3",
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
        "valid and test item at the same timestamp: file order decides which is which. "
        "The key is a float32 tensor (Dataset._dataframe_to_interaction: FLOAT fields become "
        "torch.FloatTensor), and for dataset ml-100k properties/dataset/ml-100k.yaml sets "
        "normalize_all: True, so the timestamps are min-max normalised and then rounded to "
        "float32 (~1 s resolution over ml-100k's 7 months; ~64 s for raw Unix times): "
        "timestamps closer than that tie and keep file order. mtrec sorts the exact "
        "timestamps, so its loo differs from RecBole's own on 5 of 943 users' valid item and "
        "4 users' test item; replaying mtrec's split on RecBole's rounded timestamps "
        "reproduces RecBole's exactly (split_check)."
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
    "benchmark_files": (
        "config benchmark_filename [train, valid, test]: Dataset._load_inter_feat reads "
        "<name>.train/.valid/.test.inter and Dataset.build() returns the three parts as loaded "
        "(no ordering, no split; eval_args.split is ignored). Tokens are remapped jointly "
        "(pd.factorize over all three files, then the .item file). SequentialDataset: "
        "_change_feat_format skips data_augmentation() when benchmark_filename is set and "
        "_benchmark_presets() takes item_id_list from the files (item_length = its length), so "
        "the export writes the augmented examples; alias_of_item_id [item_id_list] puts the "
        "sequences in the item id space. A token sequence is padded to the longest one and "
        "cut to its FIRST field2seqlen items (_dataframe_to_interaction: d[:field2seqlen]; "
        "seq_len config), and SASRec has MAX_ITEM_LIST_LENGTH (50) positions, so the export "
        "writes the last 50 items, as data_augmentation() would. Sampler.used_ids "
        "accumulates the phases as loaded, so the general-model mask is unchanged: train at "
        "valid, train + valid at test, minus the phase's positives."
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
        "decided by torch.topk's tie order. On RecBole's own loo split (schema 1 of this file) "
        "re-scoring the trained Pop with a stable low-id-first tie break gave NDCG@10 0.0406, "
        "high-id-first 0.0315, true train popularity 0.0449, torch 2.13.0's topk 0.0354. On "
        "mtrec's split RecBole's own figure (topk ties) and the re-scored one (mtrec's seeded "
        "random ties) differ by up to ~0.02 on Pop only (check.test_diff_vs_recbole); mtrec's "
        "own Pop baseline ranks by true training popularity."
    ),
}

ALL_MODELS = ["Pop", "BPR", "ItemKNN", "LightGCN", "GRU4Rec", "SASRec"]
SEQUENTIAL_MODELS = {"GRU4Rec", "SASRec"}
# mtrec's protocol names; "rs" is accepted for RecBole's name of the random split.
PROTOCOL_ALIASES = {"loo": "loo", "random": "random", "rs": "random"}
# RecBole's own eval_args for each protocol: used only by --check-split, which lets RecBole
# split the raw data itself and compares with mtrec's split.
RECBOLE_EVAL_ARGS = {
    "loo": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO", "mode": "full"},
    "random": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
}
# Training runs read the three exported phases; RecBole ignores `split` then, and sequential
# datasets insist on order TO (SequentialDataset.build) even though nothing is sorted.
BENCHMARK_EVAL_ARGS = {
    "split": {"LS": "valid_and_test"},
    "group_by": "user",
    "order": "TO",
    "mode": "full",
}
# Fixed for every run. RecBole's own defaults (properties/overall.yaml) are topk [10] and
# valid_metric MRR@10; we use the values below. Everything else is RecBole's default.
BASE_CONFIG = {
    "seed": 2020,
    "reproducibility": True,
    "use_gpu": False,
    "show_progress": False,
    "topk": [5, 10, 20],
    "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
    "valid_metric": "NDCG@10",
    "benchmark_filename": ["train", "valid", "test"],
    "field_separator": "\t",
    "seq_separator": " ",
    "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
}
# Model-specific settings RecBole 1.2.1 requires: Config._set_default_parameters raises
# "train_neg_sample_args [...] should be None when the loss_type is CE" for sequential CE models.
# The input sequences are a column of the benchmark files, remapped with the item ids (alias).
SEQUENTIAL_CONFIG = {
    "train_neg_sample_args": None,
    "load_col": {"inter": ["user_id", "item_id_list", "item_id", "timestamp"], "item": ["item_id"]},
    "alias_of_item_id": ["item_id_list"],
}
MODEL_CONFIG = {"GRU4Rec": SEQUENTIAL_CONFIG, "SASRec": SEQUENTIAL_CONFIG}
MAX_ITEM_LIST_LENGTH = 50  # RecBole's default MAX_ITEM_LIST_LENGTH
# mtrec mask name per convention; RecBole's own convention per model type.
CONVENTIONS = {"masked": "history", "unmasked": "none"}
KS = (5, 10, 20)
PER_USER_METRICS = ("ndcg@10", "recall@10", "mrr@10", "precision@10", "f1@10", "hit@10")
DATA_FILES = ["ml-100k.inter", "ml-100k.item", "ml-100k.user"]


def recbole_convention(model: str) -> str:
    """The convention RecBole's own evaluation uses for a model (see full_ranking_masks)."""
    return "unmasked" if model in SEQUENTIAL_MODELS else "masked"


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
        "niceness": os.nice(0),
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


def slug(name: str) -> str:
    """A file-name-safe dataset name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


# ---- export of mtrec's split ---------------------------------------------------------------
def _write_atomic(path: Path, header: list[str], rows: list[list[str]]) -> str:
    """Write one RecBole atomic file (tab-separated, typed header); returns its sha256."""
    text = "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    path.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def export_split(
    ds: Any, split: Any, root: Path, name: str, sequential: bool, max_len: int = 50
) -> dict:
    """Write an mtrec split as RecBole benchmark files ``root/name/name.{train,valid,test}.inter``.

    Tokens are mtrec's dense ids as decimal strings (any external id, spaces included, survives;
    the per-user results map them back to ``ds.users[u].user_id``). ``name.item`` lists every
    catalog item, so RecBole ranks exactly mtrec's candidates, items without interactions too.

    Args:
        ds: The mtrec ``Dataset``.
        split: ``split_dataset(ds, protocol)``.
        root: Data root (RecBole's ``data_path``).
        name: RecBole dataset name (directory and file prefix).
        sequential: Write augmented examples (``item_id_list``) for sequential models.
        max_len: Longest input sequence (RecBole's MAX_ITEM_LIST_LENGTH).

    Returns:
        Rows per phase and sha256 per file.
    """
    import numpy as np

    out_dir = root / name
    out_dir.mkdir(parents=True, exist_ok=True)
    phases = {"train": split.train, "valid": split.valid, "test": split.test}
    info: dict[str, Any] = {"name": name, "sequential": sequential, "rows": {}, "sha256": {}}
    # Each user's rows in time order (stable: ties keep row order, as mtrec's histories).
    order = np.lexsort((ds.timestamp, ds.user_idx))
    phase_of = np.empty(ds.n_interactions, np.int8)
    for p, rows in enumerate(phases.values()):
        phase_of[rows] = p
    out_rows: dict[str, list[list[str]]] = {p: [] for p in phases}
    names = list(phases)
    bounds = np.searchsorted(ds.user_idx[order], np.arange(ds.n_users + 1))
    for u in range(ds.n_users):
        rows = order[bounds[u] : bounds[u + 1]]
        # Earlier phases first: the history a phase's example may read (train < valid < test).
        rows = rows[np.argsort(phase_of[rows], kind="stable")]
        items = ds.item_idx[rows]
        for j, r in enumerate(rows):
            phase = names[phase_of[r]]
            if not sequential:
                out_rows[phase].append([str(u), str(items[j]), repr(float(ds.timestamp[r]))])
            elif j > 0:  # RecBole's augmentation: no example for a user's first interaction
                seq = " ".join(str(i) for i in items[max(0, j - max_len) : j])
                out_rows[phase].append([str(u), seq, str(items[j]), repr(float(ds.timestamp[r]))])
    header = (
        ["user_id:token", "item_id_list:token_seq", "item_id:token", "timestamp:float"]
        if sequential
        else ["user_id:token", "item_id:token", "timestamp:float"]
    )
    for phase, rows in out_rows.items():
        path = out_dir / f"{name}.{phase}.inter"
        info["sha256"][path.name] = _write_atomic(path, header, rows)
        info["rows"][phase] = len(rows)
    item_path = out_dir / f"{name}.item"
    info["sha256"][item_path.name] = _write_atomic(
        item_path, ["item_id:token"], [[str(i)] for i in range(ds.n_items)]
    )
    return info


def export_raw(ds: Any, root: Path, name: str) -> Path:
    """All interactions in mtrec's row order as one RecBole ``.inter`` (for --check-split)."""
    out_dir = root / name
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        [str(u), str(i), repr(float(t))]
        for u, i, t in zip(ds.user_idx, ds.item_idx, ds.timestamp, strict=True)
    ]
    _write_atomic(
        out_dir / f"{name}.inter", ["user_id:token", "item_id:token", "timestamp:float"], rows
    )
    return out_dir


# ---- one RecBole subprocess ----------------------------------------------------------------
class Interrupted(Exception):
    """This script got SIGTERM/SIGINT/SIGHUP while a run was in progress."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def run_subprocess(
    cmd: list[str], cwd: Path, log_path: Path, threads: int, timeout: float | None
) -> tuple[int, bool, str | None, float]:
    """Run the runner; returns ``(returncode, timed_out, interrupted_signal, wall_seconds)``.

    The child gets its own process group, so a timeout or a signal to this script stops it
    and everything it started.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    if threads:
        # One thread each: on a shared 2-core machine more threads oversubscribe the CPU (a
        # GRU4Rec step took ~17 s with 2 threads beside other work, ~2 s with 1).
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    interrupted, timed_out = None, False
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=timeout)
        except (Interrupted, subprocess.TimeoutExpired) as exc:
            if isinstance(exc, Interrupted):
                interrupted = exc.signame
            else:
                timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
    return rc, timed_out, interrupted, round(time.perf_counter() - t0, 3)


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def run_one(
    model: str,
    protocol: str,
    dataset_slug: str,
    export: dict,
    args: argparse.Namespace,
    venv: Path,
    work: Path,
    data_root: Path,
) -> dict:
    """Train and test one RecBole model on exported benchmark files; returns the entry."""
    tag = f"{dataset_slug}-{protocol}-{model}"
    run_dir = work / "runs" / tag
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True)
    config_dict = json.loads(json.dumps(BASE_CONFIG))
    config_dict["eval_args"] = dict(BENCHMARK_EVAL_ARGS)
    config_dict["state"] = args.state
    config_dict["checkpoint_dir"] = str(run_dir / "checkpoints")
    config_dict.update(json.loads(json.dumps(MODEL_CONFIG.get(model, {}))))
    if args.epochs is not None:
        config_dict["epochs"] = args.epochs
    spec = {
        "model": model,
        "dataset": export["name"],
        "data_path": str(data_root),
        "config_dict": config_dict,
        "progress_path": str(run_dir / "progress.jsonl"),
        "dump_path": str(run_dir / "scores.npz"),
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
    base: dict[str, Any] = {
        "dataset": dataset_slug,
        "protocol": protocol,
        "model": model,
        "split_export": export,
        "epochs_cap": args.epochs,
        "max_minutes": args.max_minutes,
        "train_budget_minutes": args.train_budget_minutes,
        "threads": args.threads,
        "niceness": os.nice(0),
        "log": _relative(log_path),
        "run_dir": _relative(run_dir),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):
        base["loadavg_at_start"] = list(os.getloadavg())
    timeout = args.max_minutes * 60 if args.max_minutes else None
    cmd = [str(venv_python(venv)), str(RUNNER), str(spec_path), str(result_path)]
    log(f"run {tag}: {shlex.join(cmd)}" + (f" (timeout {timeout:.0f}s)" if timeout else ""))
    rc, timed_out, interrupted, wall = run_subprocess(cmd, run_dir, log_path, args.threads, timeout)
    base["wall_seconds"] = wall
    with contextlib.suppress(OSError):
        base["loadavg_at_end"] = list(os.getloadavg())
    if not timed_out and not interrupted and rc == 0 and result_path.exists():
        result = json.loads(result_path.read_text())
        # The runner's "dataset" is RecBole's name of the export; keep ours as the key.
        return {**base, **result, "dataset": dataset_slug, "recbole_dataset": result["dataset"]}
    progress = read_progress(run_dir / "progress.jsonl")
    valid = [e for e in progress if e.get("event") == "valid"]
    return {
        **base,
        "status": "timed_out" if timed_out else ("interrupted" if interrupted else "failed"),
        **({"signal": interrupted} if interrupted else {}),
        "returncode": rc,
        "epochs_validated_before_stop": len(valid),
        "valid_curve": [[e["epoch"], e["valid_score"]] for e in valid],
        "best_valid_score_before_stop": max((e["valid_score"] for e in valid), default=None),
        "log_tail": log_path.read_text(errors="replace").splitlines()[-15:],
        "config_dict": config_dict,
    }


# ---- scoring the dumped matrices with mtrec's evaluator ------------------------------------
def _dump_matrix(z: Any, phase: str, ds: Any) -> tuple[Any, dict]:
    """The (n_users, n_items) score matrix of one phase by mtrec dense ids (NaN: no row)."""
    import numpy as np

    items = z["items"].astype(np.int64)
    if sorted(items.tolist()) != list(range(ds.n_items)):
        raise ValueError("the dump's items are not exactly the dataset's catalog")
    users = z[f"{phase}_users"].astype(np.int64)
    if len(np.unique(users)) != len(users):
        raise ValueError(f"{phase}: several rows per user (not a one-example-per-user phase)")
    scores = np.full((ds.n_users, ds.n_items), np.nan, np.float32)
    scores[users[:, None], items[None, :]] = z[f"{phase}_scores"]
    info: dict[str, Any] = {"rows": len(users)}
    # The targets RecBole evaluated must be the targets mtrec evaluates.
    counts = z[f"{phase}_target_counts"]
    flat = z[f"{phase}_targets"].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    info["recbole_targets"] = {
        int(u): np.unique(flat[starts[r] : starts[r + 1]]) for r, u in enumerate(users)
    }
    if f"{phase}_last_input" in z.files:
        info["last_input"] = dict(
            zip(users.tolist(), z[f"{phase}_last_input"].astype(np.int64).tolist(), strict=True)
        )
    return scores, info


def rescore(entry: dict, ds: Any, split: Any, per_user_dir: Path) -> dict:
    """Score a finished run's dumped matrices with mtrec's evaluator, both conventions.

    Adds ``metrics`` ({convention: {phase: summary}}), ``recbole_own``, ``check`` and
    ``per_user_file`` (test phase, both conventions) to the entry and returns it.
    """
    import numpy as np

    from mtrec.data.history import user_histories
    from mtrec.evaluation.evaluator import (
        PrecomputedScores,
        evaluate_ranking_per_user,
        phase_targets,
    )
    from mtrec.evaluation.stats import save_per_user

    dump = REPO / entry["run_dir"] / "scores.npz"
    metrics: dict[str, dict[str, dict]] = {c: {} for c in CONVENTIONS}
    checks: dict[str, Any] = {}
    per_user: dict[str, dict[str, np.ndarray]] = {}
    users_out = None
    with np.load(dump) as z:
        for phase in ("valid", "test"):
            scores, info = _dump_matrix(z, phase, ds)
            ours = phase_targets(ds, split, phase)
            checks[f"{phase}_targets_equal"] = (
                all(np.array_equal(ours[u], t) for u, t in info["recbole_targets"].items())
                and sum(len(t) > 0 for t in ours) == info["rows"]
            )
            if "last_input" in info:
                # Sequential input: its last item must be the user's latest earlier-phase item
                # (at test: the valid item, as in RecBole's LS protocol).
                hist = user_histories(ds, split.rows_before(phase))
                checks[f"{phase}_last_input_is_latest_history_item"] = all(
                    len(hist[u]) and hist[u].items[-1] == i for u, i in info["last_input"].items()
                )
            model = PrecomputedScores(scores, entry["model"])
            for convention, mask in CONVENTIONS.items():
                ev = evaluate_ranking_per_user(model, ds, split, phase, ks=KS, mask=mask)
                metrics[convention][phase] = ev.summary
                if phase == "test":
                    users_out = ev.users
                    per_user[convention] = {m: ev.per_user[m] for m in PER_USER_METRICS}
    convention = recbole_convention(entry["model"])
    own = {
        "convention": convention,
        "test": entry.get("test_result"),
        "valid": entry.get("valid_result_best_model"),
    }
    for phase in ("valid", "test"):
        theirs = own[phase] or {}
        diffs = {
            k: round(metrics[convention][phase][k] - v, 6)
            for k, v in theirs.items()
            if k in metrics[convention][phase]
        }
        checks[f"{phase}_diff_vs_recbole"] = diffs
        checks[f"{phase}_max_abs_diff"] = max((abs(d) for d in diffs.values()), default=None)
    # RecBole rounds to 4 decimals, so agreement means |diff| <= 5e-5 plus float noise.
    checks["agrees_within_1e-4"] = bool(
        checks["test_max_abs_diff"] is not None and checks["test_max_abs_diff"] <= 1e-4
    )
    path = per_user_dir / f"recbole-{entry['dataset']}-{entry['protocol']}-{entry['model']}.npz"
    save_per_user(path, users_out, per_user)
    entry.update(metrics=metrics, recbole_own=own, check=checks, per_user_file=_relative(path))
    return entry


# ---- split check -----------------------------------------------------------------------------
def _split_pairs(ds: Any, rows: Any) -> list[tuple[int, int]]:
    return sorted(zip(ds.user_idx[rows].tolist(), ds.item_idx[rows].tolist(), strict=True))


def _with_timestamps(ds: Any, timestamps: Any) -> Any:
    """The same dataset with other timestamps (float64 copies of the given values)."""
    from mtrec.data.schema import Dataset

    return Dataset(
        ds.name,
        ds.items,
        ds.users,
        ds.user_idx,
        ds.item_idx,
        ds.event,
        ds.value,
        timestamps.astype("float64"),
    )


def check_split(
    ds: Any,
    dataset_slug: str,
    protocols: list[str],
    venv: Path,
    work: Path,
    data_root: Path,
    wheel_data_root: Path | None,
) -> dict:
    """Let RecBole split the raw data itself and compare with mtrec's split.

    loo: the (user, item) pairs of every phase must be equal. random: RecBole shuffles with
    torch and mtrec with numpy, so only the per-user counts (RecBole's count rule) can agree.
    For ml-100k the check also runs on RecBole's own copy of the files (dataset name
    ``ml-100k``, so RecBole's ml-100k.yaml applies, as in RecBole's published setting).
    """
    import numpy as np

    from mtrec.evaluation import split_dataset

    raw_name = f"{dataset_slug}-raw"
    export_raw(ds, data_root, raw_name)
    sources = [("mtrec rows", raw_name, data_root)]
    if wheel_data_root is not None and ds.name == "ml-100k":
        sources.append(("RecBole's ml-100k files", "ml-100k", wheel_data_root))
    out: dict[str, Any] = {}
    for protocol in protocols:
        ours = split_dataset(ds, protocol)
        for label, name, root in sources:
            run_dir = work / "split-check" / f"{name}-{protocol}"
            run_dir.mkdir(parents=True, exist_ok=True)
            load_col = {"inter": ["user_id", "item_id", "timestamp"]}
            if name == "ml-100k":
                load_col = {"inter": ["user_id", "item_id", "rating", "timestamp"]}
            spec = {
                "mode": "split",
                "dataset": name,
                "data_path": str(root),
                "config_dict": {
                    "seed": 2020,
                    "reproducibility": True,
                    "use_gpu": False,
                    "eval_args": RECBOLE_EVAL_ARGS[protocol],
                    "load_col": load_col,
                    "state": "WARNING",
                },
                "split_path": str(run_dir / "split.json"),
            }
            (run_dir / "spec.json").write_text(json.dumps(spec))
            cmd = [str(venv_python(venv)), str(RUNNER), str(run_dir / "spec.json")]
            cmd.append(str(run_dir / "result.json"))
            rc, _, _, wall = run_subprocess(cmd, run_dir, run_dir / "stdout.log", 1, 1800)
            if rc != 0:
                out[f"{protocol}/{label}"] = {"status": "failed", "returncode": rc}
                continue
            theirs = json.loads((run_dir / "split.json").read_text())
            if name == "ml-100k":  # external tokens -> mtrec dense ids

                def to_pairs(p: dict) -> list[tuple[int, int]]:
                    return sorted(
                        (ds.user_index(u), ds.item_index(i))
                        for u, i in zip(p["users"], p["items"], strict=True)
                    )
            else:

                def to_pairs(p: dict) -> list[tuple[int, int]]:
                    return sorted(
                        (int(u), int(i)) for u, i in zip(p["users"], p["items"], strict=True)
                    )

            result: dict[str, Any] = {"seconds": wall}
            if protocol == "loo":
                # RecBole sorts float32 timestamps (min-max normalised first when ml-100k.yaml's
                # normalize_all applies), which merges timestamps closer than float32 can tell
                # apart; ties then keep file order. mtrec sorts the exact timestamps. Replaying
                # mtrec's split on RecBole's rounded timestamps shows whether that is the only
                # difference.
                ts = ds.timestamp
                if name == "ml-100k":
                    ts = (ts - ts.min()) / max(ts.max() - ts.min(), 1e-12)
                rounded = split_dataset(_with_timestamps(ds, ts.astype(np.float32)), protocol)
                result["mtrec_split_on_float32_timestamps_equal"] = all(
                    _split_pairs(ds, rounded.rows_of(ph)) == to_pairs(theirs[ph])
                    for ph in ("train", "valid", "test")
                )
            for phase in ("train", "valid", "test"):
                mine = _split_pairs(ds, ours.rows_of(phase))
                recbole = to_pairs(theirs[phase])
                if protocol == "loo":
                    a, b = set(mine), set(recbole)
                    result[phase] = {
                        "equal": mine == recbole,
                        "rows": len(mine),
                        "pairs_only_mtrec": len(a - b),
                        "pairs_only_recbole": len(b - a),
                        "users_differing": len({u for u, _ in a ^ b}),
                    }
                else:
                    cm = np.bincount([u for u, _ in mine], minlength=ds.n_users)
                    cr = np.bincount([u for u, _ in recbole], minlength=ds.n_users)
                    result[phase] = {
                        "per_user_counts_equal": bool((cm == cr).all()),
                        "rows": len(mine),
                    }
            out[f"{protocol}/{label}"] = result
            log(f"split check {protocol} vs {label}: {json.dumps(result)}")
    return out


# ---- results file ----------------------------------------------------------------------------
def summarize(entry: dict) -> str:
    head = f"{entry['model']:9s} {entry['protocol']:6s}"
    if entry.get("status") != "ok":
        return f"{head} {entry.get('status')} {entry.get('reason', '')}".rstrip()
    parts = [head]
    for convention in CONVENTIONS:
        m = entry.get("metrics", {}).get(convention, {}).get("test")
        if m:
            parts.append(f"{convention} ndcg@10={m['ndcg@10']:.4f}")
    own = entry.get("test_result") or {}
    parts.append(f"recbole-own({recbole_convention(entry['model'])})={own.get('ndcg@10')}")
    parts.append(f"train={entry.get('train_seconds', 0):.1f}s epochs={entry.get('epochs_run')}")
    return " ".join(parts)


def table_rows(doc: dict) -> list[dict]:
    """One row per (dataset, protocol, model, convention) of the finished runs."""
    rows = []
    for e in doc["results"].values():
        if e.get("status") != "ok" or "metrics" not in e:
            rows.append({k: e.get(k) for k in ("dataset", "protocol", "model", "status")})
            continue
        for convention in CONVENTIONS:
            m = e["metrics"][convention]["test"]
            own = convention == recbole_convention(e["model"])
            rows.append(
                {
                    "dataset": e["dataset"],
                    "protocol": e["protocol"],
                    "model": e["model"],
                    "convention": convention,
                    "status": "ok",
                    **{k: round(m[k], 4) for k in (*PER_USER_METRICS, "coverage@10")},
                    "recbole_own_ndcg@10": e["test_result"]["ndcg@10"] if own else None,
                    "train_seconds": e.get("train_seconds"),
                    "epochs_run": e.get("epochs_run"),
                    "stopped_early": e.get("stopped_early"),
                    "stopped_by_train_budget": e.get("stopped_by_train_budget"),
                    "loadavg_at_start": e.get("loadavg_at_start"),
                    "loadavg_at_end": e.get("loadavg_at_end"),
                }
            )
    return rows


def _load_doc(path: Path) -> dict:
    """The results file; a schema-1 file (RecBole's own splits) is kept under a legacy key."""
    doc: dict = {}
    if path.exists():
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads(path.read_text())
    if doc and doc.get("schema") != SCHEMA:
        doc = {"legacy_recbole_own_split": doc}
    doc["schema"] = SCHEMA
    doc.setdefault("results", {})
    doc.setdefault("invocations", [])
    return doc


@contextlib.contextmanager
def locked_doc(path: Path) -> Iterator[dict]:
    """Read, change and write the results file under an exclusive lock.

    A long background run and a ``--rescore-only`` or ``--check-split`` beside it each
    re-read the file before writing, so neither overwrites what the other wrote.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    # One lock per results file, whichever copy of this script runs, outside the repository.
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"recbole_peer-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = _load_doc(path)
        yield doc
        doc["results"] = dict(sorted(doc["results"].items()))
        doc["table"] = table_rows(doc)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, path)


def result_key(entry: dict) -> str:
    return f"{entry['dataset']}/{entry['protocol']}/{entry['model']}"


HEADER_NOTES = [
    "Split: mtrec's own (split_dataset on the dataset mtrec loads), exported to RecBole "
    "benchmark files; tokens are mtrec dense ids; the .item file lists the whole catalog. "
    "loo equals RecBole's LS valid_and_test rules (see split_check); random is mtrec's seeded "
    "numpy draw with RecBole's per-user count rule (RecBole's own RS draws with torch, so the "
    "rows differ, the counts agree).",
    "Training: RecBole 1.2.1 defaults (300 epochs, stopping_step 10 on valid NDCG@10, RecBole's "
    "model yaml) + base_config + model_config; one process per run, 1 torch/OpenMP thread, "
    "niced; the machine has 2 cores shared with other work, so wall times are noisy and "
    "loadavg at start/end of each run is recorded.",
    "Metrics: computed here by mtrec.evaluation from the dumped full-sort scores (random "
    "tie-breaking, seed 2020), under both conventions: masked (earlier-phase items excluded, "
    "RecBole's general-model convention) and unmasked (nothing excluded, RecBole's sequential "
    "convention). recbole_own is RecBole's own figure for the convention it uses; check holds "
    "the difference (RecBole rounds to 4 decimals and breaks ties with torch.topk).",
    "Pop: RecBole's item_cnt counts training batches an item appears in, so many items tie "
    "(see recbole_protocol.pop_quirk): its figure depends on the tie-break; mtrec's random "
    "tie-break and torch.topk's differ there.",
    "Sequential models on random: skipped (RecBole refuses order RO for sequential datasets; "
    "a held-out random subset has no 'next item').",
    "train_budget_minutes / max_minutes, when set, are recorded per run; a run stopped by the "
    "budget (stopped_by_train_budget) is an under-trained peer.",
]


# ---- command line ----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-100k", help="mtrec dataset name or path")
    p.add_argument("--models", default=",".join(ALL_MODELS), help="comma list, or 'none'")
    p.add_argument("--protocols", default="loo,random", help="comma list of loo,random (rs)")
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
    p.add_argument("--per-user-dir", type=Path, default=PER_USER_DIR)
    p.add_argument("--state", default="INFO", help="RecBole logging state (INFO/WARNING)")
    p.add_argument("--note", default=None, help="free text stored with this invocation")
    p.add_argument("--setup-only", action="store_true", help="install venv + data, then exit")
    p.add_argument(
        "--check-split", action="store_true", help="compare mtrec's split with RecBole's own"
    )
    p.add_argument(
        "--rescore-only",
        action="store_true",
        help="re-score existing runs' dumped matrices (no training)",
    )
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.models = [] if models == ["none"] else models
    protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    for m in args.models:
        if m not in ALL_MODELS:
            p.error(f"unknown model {m!r}; choose from {ALL_MODELS}")
    for x in protocols:
        if x not in PROTOCOL_ALIASES:
            p.error(f"unknown protocol {x!r}; choose from {sorted(PROTOCOL_ALIASES)}")
    args.protocols = list(dict.fromkeys(PROTOCOL_ALIASES[x] for x in protocols))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work_dir.resolve()
    venv = args.venv.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env_info = ensure_venv(venv, work)
    wheel_root, digests = ensure_data(venv, work)
    log(f"venv ready: {env_info['versions']}")
    if args.setup_only:
        return 0

    # Every mtrec module this run uses is imported now: a run of hours must not pick up a
    # half-edited module of a checkout that others are changing.
    from mtrec.data import load_dataset
    from mtrec.data.history import user_histories  # noqa: F401
    from mtrec.evaluation import split_dataset
    from mtrec.evaluation.evaluator import evaluate_ranking_per_user  # noqa: F401
    from mtrec.evaluation.stats import save_per_user  # noqa: F401

    ds = load_dataset(args.dataset)
    dataset_slug = slug(ds.name)
    data_root = work / "exports"
    log(f"dataset {ds.name}: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} rows")
    invocation = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "venv_python": env_info.get("python"),
        "versions": env_info["versions"],
        "recbole_wheel_ml100k_sha256": digests,
        "dataset": ds.name,
        "models": args.models,
        "protocols": args.protocols,
        "epochs_cap": args.epochs,
        "max_minutes": args.max_minutes,
        "train_budget_minutes": args.train_budget_minutes,
        "threads": args.threads,
        "note": args.note,
        "rescore_only": args.rescore_only,
        "check_split": args.check_split,
    }
    with locked_doc(args.output) as doc:
        doc["invocations"].append(invocation)
        invocation_index = len(doc["invocations"]) - 1
        doc.update(
            benchmark=f"RecBole {RECBOLE_VERSION} on mtrec's splits, scored by mtrec's evaluator",
            notes=HEADER_NOTES,
            base_config=BASE_CONFIG,
            model_config=MODEL_CONFIG,
            recbole_protocol=RECBOLE_PROTOCOL,
        )
        previous = dict(doc["results"])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_interrupted)
    splits: dict[str, Any] = {}
    for protocol in args.protocols:
        try:
            splits[protocol] = split_dataset(ds, protocol)
        except ValueError as exc:  # e.g. loo on a dataset without timestamps
            splits[protocol] = None
            log(f"{protocol}: skipped ({exc})")
    if args.check_split:
        protocols = [p for p in args.protocols if splits[p] is not None]
        checked = check_split(ds, dataset_slug, protocols, venv, work, data_root, wheel_root)
        with locked_doc(args.output) as doc:
            doc.setdefault("split_check", {}).setdefault(dataset_slug, {}).update(checked)
    for model in args.models:
        for protocol in args.protocols:
            key = f"{dataset_slug}/{protocol}/{model}"
            split = splits[protocol]
            if split is None:
                continue
            if args.rescore_only:
                entry = previous.get(key)
                if not entry or entry.get("status") != "ok":
                    log(f"{key}: no finished run to re-score")
                    continue
            elif model in SEQUENTIAL_MODELS and protocol != "loo":
                entry = {
                    "dataset": dataset_slug,
                    "protocol": protocol,
                    "model": model,
                    "status": "skipped",
                    "reason": "RecBole 1.2.1 SequentialDataset.build() requires order TO; a "
                    "random held-out split has no next item for a sequential model.",
                }
            else:
                sequential = model in SEQUENTIAL_MODELS
                name = f"{dataset_slug}-{protocol}" + ("-seq" if sequential else "")
                export = export_split(ds, split, data_root, name, sequential, MAX_ITEM_LIST_LENGTH)
                entry = run_one(model, protocol, dataset_slug, export, args, venv, work, data_root)
                entry["invocation_index"] = invocation_index
                if entry.get("status") == "interrupted":
                    with locked_doc(args.output) as doc:
                        doc.setdefault("interrupted_runs", []).append(entry)
                    log(f"stopping: got {entry['signal']}")
                    return 1
            if entry.get("status") == "ok":
                entry.pop("rescore_error", None)
                try:
                    entry = rescore(entry, ds, split, args.per_user_dir)
                    entry["rescored_by_invocation"] = invocation_index
                except Exception as exc:  # keep the run; --rescore-only can redo this part
                    entry["rescore_error"] = f"{type(exc).__name__}: {exc}"
                    log(f"{key}: re-scoring failed: {entry['rescore_error']}")
            # Written after every run so a long background job leaves partial results behind.
            with locked_doc(args.output) as doc:
                doc["results"][key] = entry
            log(summarize(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
