"""The Slurm backend against a real one-node cluster (munged, slurmctld, slurmd) started here.

The session fixture installs the Debian packages when missing (as root, with apt-get) and starts
the daemons with local/slurm_up.sh in a temporary directory, on free ports, so it never touches a
cluster already on the machine; it stops exactly the daemons it started, by their PIDs.  It skips
only where Slurm cannot be installed (not root, no apt-get, apt-get failing) and says why.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emotk.errors import EmotkError
from emotk.jobs.spec import parse_args
from tests.launchers import counting_task, run_launcher, runs, slurm_cluster

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "local" / "slurm.sh"
RUN_LOCAL = ROOT / "local" / "run_local.sh"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def slurm_env(tmp_path_factory):
    """The environment for Slurm clients of a one-node cluster brought up for this session."""
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as (env, why):
        if env is None:
            pytest.skip(f"Slurm cannot be installed on this machine: {why}")
        yield dict(env, EMOTK_PYTHON=sys.executable, PATH=f"{VENV_BIN}:{os.environ['PATH']}")


def launch(env: dict, cwd: Path, *args: str, launcher: Path = SLURM) -> subprocess.CompletedProcess:
    return run_launcher(launcher, env, cwd, *args, timeout=300)


COUNTING = counting_task("task JOB on $(hostname)")


def job_id(log: Path) -> str:
    return re.search(r"^# Slurm job (\d+)", log.read_text(), re.M).group(1)


def test_array_job_writes_a_log_per_task(slurm_env, tmp_path):
    r = launch(slurm_env, tmp_path, "--max-jobs-run", "2", "--mem", "100M", "JOB=1:4", "exp/log/hello.JOB.log",
               *COUNTING)
    assert r.returncode == 0, r.stderr
    ids = set()
    for j in (1, 2, 3, 4):
        log = (tmp_path / f"exp/log/hello.{j}.log").read_text().splitlines()
        assert log[0] == f"# bash -c 'echo run >> runs.{j}; echo task {j} on $(hostname); [ ! -e fail.{j} ] || exit 3'"
        assert log[1] == f"# Running on {socket.gethostname()}" and log[2].startswith("# Started at ")
        m = re.fullmatch(rf"# Slurm job (\d+), array task {j}", log[3])
        assert m, log[3]
        ids.add(m.group(1))
        assert f"task {j} on {socket.gethostname()}" in log
        assert log[-1].startswith("# Ended (code 0) at ")
    assert len(ids) == 1   # one array job
    script = (tmp_path / "exp/q/hello.sh").read_text()
    assert "-m emotk.jobs.task" in script


def test_a_single_job_without_job_range(slurm_env, tmp_path):
    r = launch(slurm_env, tmp_path, "--num-threads", "1", "exp/run1/train.out", "bash", "-c", "echo JOB $SLURM_JOB_ID")
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "exp/run1/train.out").read_text()
    m = re.search(r"^# Slurm job (\d+)$", log, re.M)
    assert m and f"\nJOB {m.group(1)}\n" in log   # JOB is left alone without JOB=
    assert sorted(p.name for p in (tmp_path / "exp/run1/q").iterdir()) == ["train.sh"]


def test_failed_task_is_reported_and_a_rerun_runs_only_it(slurm_env, tmp_path):
    (tmp_path / "fail.3").touch()
    r = launch(slurm_env, tmp_path, "JOB=1:4", "log/t.JOB.log", *COUNTING)
    assert r.returncode == 1
    assert "task 3 failed (exit code 3), log log/t.3.log" in r.stderr
    assert f"  | task 3 on {socket.gethostname()}" in r.stderr and "  | # Ended (code 3)" in r.stderr
    (tmp_path / "fail.3").unlink()
    r = launch(slurm_env, tmp_path, "JOB=1:4", "log/t.JOB.log", *COUNTING)
    assert r.returncode == 0, r.stderr
    assert "3 of 4 task(s) already done, running 1" in r.stderr
    assert [runs(tmp_path, j) for j in (1, 2, 3, 4)] == [1, 1, 2, 1]


def test_a_task_cancelled_midway_is_reported_and_rerun(slurm_env, tmp_path):
    task = ["bash", "-c", "echo run >> runs.JOB; if [ JOB = 2 ] && [ ! -e ok ]; then sleep 60; fi"]
    p = subprocess.Popen(["bash", str(SLURM), "JOB=1:2", "log/k.JOB.log", *task], cwd=tmp_path, env=slurm_env,
                         stderr=subprocess.PIPE, text=True)
    log2 = tmp_path / "log/k.2.log"
    for _ in range(600):
        if log2.exists() and "Slurm job" in log2.read_text():
            break
        time.sleep(0.05)
    subprocess.run(["scancel", f"{job_id(log2)}_2"], env=slurm_env, check=True)   # as a node failure would
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1
    # the runner passes SIGTERM on to the command and records its end; Slurm's state comes with it
    assert re.search(r"task 2 failed \(exit code 143\), log log/k.2.log; Slurm job \d+: (CANCELLED|COMPLETING)", err), err
    assert "# Ended (code 143)" in log2.read_text()
    (tmp_path / "ok").touch()
    r = launch(slurm_env, tmp_path, "JOB=1:2", "log/k.JOB.log", *task)
    assert r.returncode == 0, r.stderr
    assert [runs(tmp_path, j) for j in (1, 2)] == [1, 2]


def test_a_task_killed_midway_did_not_finish_and_is_rerun(slurm_env, tmp_path):
    # task 2 SIGKILLs the runner above it: no footer, no status, as when a node dies
    task = ["bash", "-c", "echo run >> runs.JOB; [ JOB = 1 ] || [ -e ok ] || kill -9 $PPID"]
    r = launch(slurm_env, tmp_path, "JOB=1:2", "log/k.JOB.log", *task)
    assert r.returncode == 1
    assert re.search(r"task 2 failed \(did not finish\), log log/k.2.log; Slurm job \d+: \w+", r.stderr), r.stderr
    assert "Ended" not in (tmp_path / "log/k.2.log").read_text()
    (tmp_path / "ok").touch()
    r = launch(slurm_env, tmp_path, "JOB=1:2", "log/k.JOB.log", *task)
    assert r.returncode == 0, r.stderr
    assert [runs(tmp_path, j) for j in (1, 2)] == [1, 2]


def test_sigterm_cancels_the_job(slurm_env, tmp_path):
    p = subprocess.Popen(["bash", str(SLURM), "JOB=1:3", "log/s.JOB.log", "sleep", "60"], cwd=tmp_path,
                         env=slurm_env, stderr=subprocess.PIPE, text=True)
    log1 = tmp_path / "log/s.1.log"
    for _ in range(600):
        if log1.exists() and "Slurm job" in log1.read_text():
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    jid = job_id(log1)
    assert p.returncode == 143 and f"cancelled Slurm job {jid}" in err
    active = subprocess.run(["squeue", "-h", "-j", jid, "-o", "%i %T"], env=slurm_env, capture_output=True,
                            text=True).stdout
    states = subprocess.run(["squeue", "-h", "-t", "all", "-j", jid, "-o", "%T"], env=slurm_env,
                            capture_output=True, text=True).stdout.split()
    assert "RUNNING" not in active and "PENDING" not in active
    assert states and set(states) <= {"CANCELLED", "COMPLETING"}, states


def test_sbatch_missing_is_a_one_line_error(slurm_env, tmp_path):
    bin_dir = tmp_path / "bin"   # a PATH with what local/slurm.sh itself needs, and no Slurm
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    env = dict(slurm_env, PATH=str(bin_dir))
    r = subprocess.run([shutil.which("bash"), str(SLURM), "JOB=1:2", "log/x.JOB.log", "true"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == ["local/slurm.sh: error: sbatch not found on PATH: install Slurm's client "
                                     "commands here, or use the local backend (EMOTK_BACKEND=local)"]


def test_unwritable_log_dir_is_a_one_line_error(slurm_env, tmp_path):
    (tmp_path / "afile").touch()   # a directory below a regular file cannot be made, even by root
    r = launch(slurm_env, tmp_path, "JOB=1:2", "afile/log/x.JOB.log", "true")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"local/slurm.sh: error: cannot write the log directory {tmp_path}/afile/log: "
                                     "Not a directory"]


def _feats(data: Path) -> dict[str, np.ndarray]:
    import kaldi_native_io

    with kaldi_native_io.SequentialFloatMatrixReader(f"scp:{data / 'feats.scp'}") as reader:
        return {utt: np.array(mat) for utt, mat in reader}


def test_recipe_stage_gives_the_same_features_under_both_backends(slurm_env, tmp_path):
    """Stage 2 of recipes/emodb/run.sh on a tiny synthetic corpus, through each launcher."""
    emotk = [str(VENV_BIN / "emotk")]
    subprocess.run(emotk + ["make-synthetic-corpus", "emodb", "corpus", "--size", "14", "--seed", "1"], cwd=tmp_path,
                   env=slurm_env, check=True, capture_output=True)
    subprocess.run(emotk + ["prepare-emodb", "corpus", "data/all"], cwd=tmp_path, env=slurm_env, check=True,
                   capture_output=True)
    for backend, launcher in (("slurm", SLURM), ("local", RUN_LOCAL)):
        data = f"{backend}/all"   # the same data dir name: archive names contain it
        shutil.copytree(tmp_path / "data/all", tmp_path / data)
        r = launch(slurm_env, tmp_path, launcher=launcher, *["JOB=1:2", f"exp/log/fbank_{backend}.JOB.log", "emotk",
                   "extract-fbank", data, "--nj", "2", "--job", "JOB"])
        assert r.returncode == 0, r.stderr
        subprocess.run(emotk + ["extract-fbank", data, "--nj", "2", "--merge"], cwd=tmp_path, env=slurm_env,
                       check=True, capture_output=True)
    assert "Slurm job" in (tmp_path / "exp/log/fbank_slurm.1.log").read_text()
    assert "Slurm job" not in (tmp_path / "exp/log/fbank_local.1.log").read_text()
    slurm, local = tmp_path / "slurm/all", tmp_path / "local/all"
    a, b = _feats(slurm), _feats(local)
    assert list(a) == list(b) and len(a) == 14
    for utt in a:
        assert a[utt].dtype == b[utt].dtype and a[utt].tobytes() == b[utt].tobytes(), utt
    for name in ("utt2num_frames", "frame_shift"):
        assert (slurm / name).read_bytes() == (local / name).read_bytes()
    arks = sorted(p.name for p in (slurm / "data").glob("*.ark"))
    assert len(arks) == 2 and arks == sorted(p.name for p in (local / "data").glob("*.ark"))
    for ark in arks:
        assert (slurm / "data" / ark).read_bytes() == (local / "data" / ark).read_bytes()


# --- the same threads and the same results under both backends (issue 10) -----------------------

THREAD_PROBE = [sys.executable, "-c", "import os, torch; print('threads', os.environ['OMP_NUM_THREADS'], "
                "torch.get_num_threads())"]


@pytest.mark.parametrize("launcher", [SLURM, RUN_LOCAL], ids=["slurm", "local"])
def test_a_task_computes_with_the_threads_it_asked_for(slurm_env, tmp_path, launcher):
    """--num-threads N (default 1) is the task's thread count under both backends, whatever the caller set."""
    env = dict(slurm_env, OMP_NUM_THREADS="7")
    for opts, n in (([], 1), (["--num-threads", "2"], 2)):
        r = run_launcher(launcher, env, tmp_path, *opts, f"log/threads{n}.log", *THREAD_PROBE, timeout=300)
        assert r.returncode == 0, r.stderr
        assert f"\nthreads {n} {n}\n" in (tmp_path / f"log/threads{n}.log").read_text()


def test_num_threads_must_be_a_positive_integer():
    with pytest.raises(EmotkError, match="--num-threads must be a positive integer, got '0'"):
        parse_args(["--num-threads", "0", "x.log", "true"], cwd="/w")


EMODB = ROOT / "recipes" / "emodb" / "run.sh"


def run_emodb(env: dict, work: Path, backend: str) -> subprocess.CompletedProcess:
    """The EmoDB recipe at CI size (as tests/test_recipe_emodb.py; LOSO, the fbank CNN-LSTM and one openSMILE
    SVM, their fusion; the raw-waveform model left out: minutes per run on two cores) into ``work``."""
    args = ["--synthetic-size", "56", "--synthetic-dir", str(work / "corpus"), "--data", str(work / "data"),
            "--exp", str(work / "exp"), "--results", str(work / "RESULTS.md"), "--train-opts", "--set train.epochs=2",
            "--seeds", "1", "--valid-speakers", "1", "--nj", "2", "--protocols", "loso", "--raw-model-config", "",
            "--opensmile-sets", "eGeMAPSv02", "--fusion", "neural eGeMAPSv02"]
    return subprocess.run(["bash", str(EMODB), *args], env=dict(env, EMOTK_BACKEND=backend), capture_output=True,
                          text=True, timeout=1200)


def _files(d: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.glob(pattern))}


def test_the_emodb_recipe_under_slurm_gives_the_local_backends_results(slurm_env, tmp_path):
    """Issue 10: the whole recipe with cmd.sh switched to Slurm writes the same RESULTS.md, scores and
    features as the local backend.  Both runs use the same absolute directory (data dirs, archives and
    reports name it), moved aside after each run."""
    work, runs_of = tmp_path / "work", {}
    for backend in ("local", "slurm"):
        r = run_emodb(slurm_env, work, backend)
        assert r.returncode == 0, f"{backend}:\n{r.stderr[-3000:]}"
        runs_of[backend] = work.rename(tmp_path / backend)
    local, slurm = runs_of["local"], runs_of["slurm"]
    assert (slurm / "RESULTS.md").read_bytes() == (local / "RESULTS.md").read_bytes()
    for pattern in ("data/all/feats.scp", "data/all/*.scp", "exp/**/scores/test.json",
                    "exp/**/predictions/test/*.txt"):
        a, b = _files(slurm, pattern), _files(local, pattern)
        assert a and list(a) == list(b), pattern
        for name in a:
            assert a[name] == b[name], name
    # every training run of stage 7 (run_in_parallel) was its own Slurm job; none under the local backend
    train_logs = sorted(slurm.glob("exp/*/loso/*/seed1/train.out"))
    assert len(train_logs) == 2 * 4   # the neural model and the SVM, 4 LOSO folds of the tiny corpus
    assert len({job_id(log) for log in train_logs}) == len(train_logs)
    local_logs = sorted(local.glob("exp/*/loso/*/seed1/train.out"))
    assert len(local_logs) == len(train_logs) and not any("Slurm job" in log.read_text() for log in local_logs)


# --- distributed training as one Slurm job (issue 10: steps/train_ddp.sh, $cuda_cmd) -------------

def test_ddp_training_runs_as_one_slurm_job(slurm_env, tmp_path):
    """steps/train_ddp.sh through the slurm backend: torchrun with 2 CPU processes (gloo) inside one job
    that holds 2 CPUs; rank 0 alone logs, and both ranks end with the same weights, the saved ones."""
    import torch

    from tests.toydata import write_feature_dir

    train = write_feature_dir(tmp_path / "data/train", spks=("s1", "s2", "s3"), seed=1)
    valid = write_feature_dir(tmp_path / "data/valid", spks=("s4",), seed=2)
    opts = ("--set model.params.lstm_size=8 --set model.params.fc_sizes=[8,8] --set inputs.feats.norm=none "
            "--set train.epochs=2 --set train.num_threads=1")
    env = dict(slurm_env, EMOTK_TEST_DUMP_STATE=str(tmp_path / "dump"))   # exported to the job (sbatch --export=ALL)
    r = subprocess.run(["bash", str(ROOT / "steps" / "train_ddp.sh"), "--cmd", f"{SLURM} --mem 500M", "--device", "cpu",
                        "--nproc", "2", "--opts", opts, "ldnn_small", str(train), str(valid), "exp/ddp"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = (tmp_path / "exp/ddp/train.out").read_text()
    assert out.startswith("# torchrun --standalone --nproc_per_node 2 --no-python emotk train --config ldnn_small ")
    jid = job_id(tmp_path / "exp/ddp/train.out")
    job = subprocess.run(["scontrol", "show", "job", jid], env=slurm_env, capture_output=True, text=True).stdout
    assert "NumCPUs=2 " in job and re.search(r"JobState=(COMPLETED|COMPLETING) ", job), job   # the last while Slurm tidies up
    assert [int(n) for n in re.findall(r"^emotk: epoch=(\d+) ", out, re.M)] == [1, 2]
    assert (tmp_path / "exp/ddp/done").is_file()
    ranks = [torch.load(tmp_path / "dump" / f"rank{k}.pt", weights_only=True) for k in (0, 1)]
    saved = torch.load(tmp_path / "exp/ddp/checkpoints/last.pt", weights_only=True)["model"]
    for name, value in saved.items():
        assert torch.equal(ranks[0][name], value) and torch.equal(ranks[1][name], value), name
