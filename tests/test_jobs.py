"""Job launchers (emotk.jobs) through local/run_local.sh, the Slurm option mapping, and
local/parse_options.sh.  The Slurm backend against a real cluster is in test_slurm.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emotk.errors import EmotkError
from emotk.jobs.slurm import PROJECT_CONFIG, array_ids, sbatch_command
from emotk.jobs.spec import parse_args
from tests.launchers import counting_task, run_launcher, runs

ROOT = Path(__file__).resolve().parents[1]
RUN_LOCAL = ROOT / "local" / "run_local.sh"
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", EMOTK_PYTHON=sys.executable)


def launch(cwd: Path, *args: str, launcher: Path = RUN_LOCAL) -> subprocess.CompletedProcess:
    return run_launcher(launcher, ENV, cwd, *args, timeout=120)


COUNTING = counting_task("task JOB says hello")


# --- the calling convention ---------------------------------------------------------------------

def test_parse_options_and_range_in_any_order():
    s = parse_args(["--mem", "4G", "JOB=2:5", "--max-jobs-run=2", "--gpu", "1", "log/x.JOB.log",
                    "emotk", "extract-fbank", "--job", "JOB", "--nj", "5"], cwd="/w")
    assert (s.name, s.start, s.end, s.tasks) == ("JOB", 2, 5, [2, 3, 4, 5])
    assert s.options == {"mem": "4G", "max_jobs_run": "2", "gpu": "1"}
    assert s.command(3) == ["emotk", "extract-fbank", "--job", "3", "--nj", "5"]
    assert s.log_path(3) == Path("/w/log/x.3.log")
    assert s.status_path(3) == Path("/w/q/x.3.log.status")   # Kaldi: .../log/q -> .../q
    assert s.base == "x"
    t = parse_args(["TASK=7", "out/t.TASK.txt", "echo", "TASK"], cwd="/w")   # any name; N alone is N:N
    assert t.tasks == [7] and t.command(7) == ["echo", "7"] and t.status_path(7) == Path("/w/out/q/t.7.txt.status")
    u = parse_args(["train.out", "emotk", "train", "--seed", "JOB"], cwd="/w")   # no JOB=: nothing replaced
    assert u.tasks == [1] and u.command(1) == ["emotk", "train", "--seed", "JOB"]


@pytest.mark.parametrize("args, message", [
    (["JOB=1:3", "x.log", "echo"], "3 tasks would share the log file x.log"),
    (["JOB=3:1", "x.JOB.log", "echo"], "invalid job range JOB=3:1"),
    (["JOB=0:2", "x.JOB.log", "echo"], "invalid job range JOB=0:2"),
    (["--max-jobs-run", "0", "x.log", "echo"], "--max-jobs-run must be a positive integer"),
    (["-q", "all.q", "x.log", "echo"], "unknown option -q"),
    (["x.log"], "need a log file and a command"),
    (["--mem"], "option --mem needs a value"),
])
def test_parse_errors(args, message):
    with pytest.raises(EmotkError, match=message):
        parse_args(args, cwd="/w")


def test_slurm_options_through_the_project_config():
    base = ["sbatch", "--export=ALL"]
    assert sbatch_command(PROJECT_CONFIG, {}) == base   # default gpu=0 adds nothing
    assert sbatch_command(PROJECT_CONFIG, {"mem": "4G", "num_threads": "2", "gpu": "1", "time": "1:00:00",
                                           "max_jobs_run": "3"}) == \
        base + ["--mem-per-cpu", "4G", "--cpus-per-task", "2", "--gres=gpu:1", "--time", "1:00:00"]
    assert sbatch_command(PROJECT_CONFIG, {"num_threads": "1", "mem": "0"}) == base + ["--cpus-per-task", "1"]
    with pytest.raises(EmotkError, match="option --foo-bar 1 is not described in"):
        sbatch_command(PROJECT_CONFIG, {"foo_bar": "1"})


def test_slurm_config_errors_name_the_line(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("command sbatch\noption mem=* --mem $0\nbogus line here\n")
    with pytest.raises(EmotkError, match=r"slurm.conf:3: cannot parse 'bogus line here'"):
        sbatch_command(conf, {})
    conf.write_text("option mem=* --mem $0\n")
    with pytest.raises(EmotkError, match="no 'command sbatch"):
        sbatch_command(conf, {})


def test_array_ids():
    assert array_ids([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    assert array_ids([4]) == "4"


def test_launcher_imports_nothing_heavy():
    code = ("import sys, emotk.jobs.launcher, emotk.jobs.task; "
            "heavy = {'torch', 'numpy', 'lhotse', 'typer'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the local backend ----------------------------------------------------------------------

def test_local_tasks_write_logs_with_command_host_and_times(tmp_path):
    r = launch(tmp_path, "JOB=1:3", "exp/log/hello.JOB.log", *COUNTING)
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        log = (tmp_path / f"exp/log/hello.{j}.log").read_text().splitlines()
        assert log[0] == f"# bash -c 'echo run >> runs.{j}; echo task {j} says hello; [ ! -e fail.{j} ] || exit 3'"
        assert log[1].startswith("# Running on ") and log[2].startswith("# Started at ")
        assert f"task {j} says hello" in log
        assert log[-1].startswith("# Ended (code 0) at ")
    assert not (tmp_path / "exp/q").exists()   # a call that succeeded leaves no book-keeping
    # ... so the next call runs every task again
    assert launch(tmp_path, "JOB=1:3", "exp/log/hello.JOB.log", *COUNTING).returncode == 0
    assert [runs(tmp_path, j) for j in (1, 2, 3)] == [2, 2, 2]


def test_local_failure_shows_the_log_and_a_rerun_runs_only_the_failed_task(tmp_path):
    (tmp_path / "fail.3").touch()
    r = launch(tmp_path, "JOB=1:4", "log/t.JOB.log", *COUNTING)
    assert r.returncode == 1
    assert "task 3 failed (exit code 3), log log/t.3.log" in r.stderr
    assert "  | task 3 says hello" in r.stderr and "  | # Ended (code 3)" in r.stderr
    assert "1 of 4 task(s) failed" in r.stderr
    (tmp_path / "fail.3").unlink()
    r = launch(tmp_path, "JOB=1:4", "log/t.JOB.log", *COUNTING)
    assert r.returncode == 0, r.stderr
    assert "3 of 4 task(s) already done, running 1" in r.stderr
    assert [runs(tmp_path, j) for j in (1, 2, 3, 4)] == [1, 1, 2, 1]


def test_a_changed_command_line_reruns_every_task(tmp_path):
    (tmp_path / "fail.2").touch()
    assert launch(tmp_path, "JOB=1:2", "log/t.JOB.log", *COUNTING).returncode == 1
    (tmp_path / "fail.2").unlink()
    other = COUNTING[:2] + [COUNTING[2] + " # changed"]
    assert launch(tmp_path, "JOB=1:2", "log/t.JOB.log", *other).returncode == 0
    assert [runs(tmp_path, j) for j in (1, 2)] == [2, 2]


@pytest.mark.parametrize("k", [1, 2])
def test_local_max_jobs_run_bounds_concurrency(tmp_path, k):
    # each task registers itself in running/ and records how many it sees, on arrival and after a while
    task = ("touch running/JOB; ls running | wc -l > seen/JOB; sleep 0.3; "
            "ls running | wc -l >> seen/JOB; rm running/JOB")
    (tmp_path / "running").mkdir()
    (tmp_path / "seen").mkdir()
    r = launch(tmp_path, "--max-jobs-run", str(k), "JOB=1:5", "log/c.JOB.log", "bash", "-c", task)
    assert r.returncode == 0, r.stderr
    seen = [int(n) for f in (tmp_path / "seen").iterdir() for n in f.read_text().split()]
    assert len(seen) == 10 and max(seen) == k   # k at a time: never more, and (0.3 s each) they overlap


def test_a_missing_command_is_exit_code_127(tmp_path):
    r = launch(tmp_path, "x.log", "no-such-command-anywhere", "arg")
    assert r.returncode == 1 and "exit code 127" in r.stderr
    assert "cannot run no-such-command-anywhere" in (tmp_path / "x.log").read_text()


def test_unwritable_log_dir_is_a_one_line_error(tmp_path):
    (tmp_path / "afile").touch()   # a directory below a regular file cannot be made, even by root
    r = launch(tmp_path, "JOB=1:2", "afile/log/x.JOB.log", "true")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"local/run_local.sh: error: cannot write the log directory {tmp_path}/afile/log: Not a directory"]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_running_tasks(tmp_path, sig, code):
    p = subprocess.Popen(["bash", str(RUN_LOCAL), "JOB=1:3", "log/s.JOB.log", "bash", "-c", "echo $$ > pid.JOB; sleep 60"],
                         cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
    pids = [tmp_path / f"pid.{j}" for j in (1, 2)]
    for _ in range(200):
        if all(f.exists() and f.read_text().strip() for f in pids):
            break
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=30)
    assert p.returncode == code, err
    for f in pids:  # the tasks' processes are gone
        with pytest.raises(ProcessLookupError):
            os.kill(int(f.read_text()), 0)
    assert not (tmp_path / "pid.3").exists()   # the third never started
    assert "Ended (code 143)" in (tmp_path / "log/s.1.log").read_text()


# --- local/parse_options.sh ---------------------------------------------------------------------

TOY = """#!/usr/bin/env bash
# A toy recipe.
#   bash run.sh --stage 2
set -euo pipefail
cd "$(dirname "$0")"

# begin options
stage=0                    # first stage to run
stop_stage=100             # last stage to run
# Training
seeds="1 2 3"              # training seeds; a "#" inside is fine
use_gpu=false              # train on the GPU
train_opts=""
# end options
. "{root}/local/parse_options.sh"

conf=internal
echo "stage=$stage stop_stage=$stop_stage seeds=$seeds use_gpu=$use_gpu train_opts=$train_opts rest=$*"
"""


def toy(tmp_path: Path, *args: str, marked: bool = True) -> subprocess.CompletedProcess:
    text = TOY.replace("{root}", str(ROOT))
    if not marked:
        text = text.replace("# begin options\n", "").replace("# end options\n", "")
    script = tmp_path / "run.sh"
    script.write_text(text)
    return subprocess.run(["bash", str(script), *args], cwd="/", capture_output=True, text=True, timeout=60)


def test_parse_options_sets_declared_options(tmp_path):
    r = toy(tmp_path, "--stage", "3", "--stop-stage=4", "--seeds", "4 5", "--use-gpu", "true",
            "--train_opts", "--set a=1", "pos1", "pos2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "stage=3 stop_stage=4 seeds=4 5 use_gpu=true train_opts=--set a=1 rest=pos1 pos2\n"


def test_parse_options_help_lists_only_the_declared_options(tmp_path):
    r = toy(tmp_path, "--stage", "2", "--help")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == ["Usage: run.sh [options]", "A toy recipe.", "  bash run.sh --stage 2"]
    options = lines[lines.index("Options (--name VALUE or --name=VALUE) [default]:") + 1:]
    assert [ln.split()[0] for ln in options] == ["--stage", "--stop-stage", "Training", "--seeds", "--use-gpu",
                                                 "--train-opts"]
    assert options[0].split(None, 1)[1] == "first stage to run [2]"   # the value as given so far
    assert options[3].split(None, 1)[1] == 'training seeds; a "#" inside is fine [1 2 3]'
    assert options[5].split(None, 1)[1] == "[]"
    assert "conf" not in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--conf", "x"], "run.sh: unknown option --conf (run.sh --help lists the options)"),
    (["--stage"], "run.sh: option --stage needs a value"),
    (["--use-gpu", "yes"], "run.sh: option --use-gpu takes true or false, not 'yes'"),
    (["--PATH", "/x"], "run.sh: unknown option --PATH (run.sh --help lists the options)"),
])
def test_parse_options_errors_are_one_line(tmp_path, args, message):
    r = toy(tmp_path, *args)
    assert r.returncode == 1 and r.stderr.splitlines() == [message] and r.stdout == ""


def test_parse_options_without_markers_keeps_the_old_rule(tmp_path):
    r = toy(tmp_path, "--stage", "5", "--train-opts", "x", marked=False)
    assert r.returncode == 0 and r.stdout.startswith("stage=5 ") and "train_opts=x " in r.stdout
    r = toy(tmp_path, "--no-such-thing", "1", marked=False)
    assert r.returncode == 1 and r.stderr.splitlines() == ["run.sh: unknown option --no-such-thing (run.sh --help lists the options)"]
