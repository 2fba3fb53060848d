"""openSMILE extraction throughput: `emotk extract-opensmile` per feature set against the opensmile
package's own `Smile.process_file` loop, and --nj 1 against --nj 2; every run a whole process.

    python benchmarks/bench_opensmile.py [--size 80] [--repeats 2] [--nj-sets ComParE_2016,eGeMAPSv02] [--no-write]

The corpus is `emotk make-synthetic-corpus emodb DIR --size SIZE --seed 1` (espeak-ng speech, 16 kHz)
prepared with `emotk prepare-emodb`. x real time per core = audio seconds / CPU seconds of the
process and its workers (start-up included). Writes the "openSMILE extraction" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_common import EMOTK, publish, run_process, section_head  # noqa: E402

HEADING = "## openSMILE extraction"
# The package's own loop over the files: what a user of the opensmile package would write.
PACKAGE_LOOP = """
import sys, warnings
warnings.simplefilter("ignore")
import opensmile
smile = opensmile.Smile(feature_set=opensmile.FeatureSet[sys.argv[1]], feature_level=opensmile.FeatureLevel.Functionals)
for path in open(sys.argv[2]).read().split():
    smile.process_file(path)
"""


def fresh_copy(data: Path, dst: Path) -> Path:
    """The data dir's tables without any features (absolute audio paths)."""
    from emotk.data.datadir import DataDir, write_table

    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    d = DataDir(data)
    for name in ("utt2spk", "spk2utt"):
        shutil.copyfile(data / name, dst / name)
    write_table(dst / "wav.scp", {r: str(d.wav_path(r)) for r in d.table("wav.scp")})
    return dst


def main() -> None:
    from emotk.data.datadir import DataDir
    from emotk.features.opensmile import SETS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=80, help="utterances of the synthetic EmoDB")
    p.add_argument("--repeats", type=int, default=2, help="runs per measurement; the fastest counts")
    p.add_argument("--sets", default=",".join(SETS), help="feature sets to time")
    p.add_argument("--nj-sets", default="ComParE_2016,eGeMAPSv02", help="sets timed with --nj 1 and --nj 2")
    p.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md alone")
    args = p.parse_args()

    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_opensmile."))
    try:
        subprocess.run([*EMOTK, "make-synthetic-corpus", "emodb", str(tmp / "corpus"), "--size", str(args.size),
                        "--seed", "1"], check=True, capture_output=True)
        subprocess.run([*EMOTK, "prepare-emodb", str(tmp / "corpus"), str(tmp / "data")], check=True, capture_output=True)
        import soundfile as sf

        d = DataDir(tmp / "data")
        wavs = [str(d.wav_path(r)) for r in d.table("wav.scp")]
        audio = sum(sf.info(w).duration for w in wavs)
        (tmp / "wavs.txt").write_text("\n".join(wavs) + "\n")

        def best(fn) -> tuple[float, float]:
            runs = [fn(r) for r in range(args.repeats)]
            return min(w for w, _ in runs), min(c for _, c in runs)

        def emotk_run(feature_set: str, nj: int, r: int) -> tuple[float, float]:
            copy = fresh_copy(tmp / "data", tmp / f"x{r}")
            return run_process([*EMOTK, "extract-opensmile", str(copy), "--set", feature_set, "--nj", str(nj)])

        rows, nj_rows = [], []
        for s in args.sets.split(","):
            ours = best(lambda r: emotk_run(s, 1, r))
            ref = best(lambda r: run_process([sys.executable, "-c", PACKAGE_LOOP, s, str(tmp / "wavs.txt")]))
            rows.append((s, SETS[s], ours, ref))
        for s in args.nj_sets.split(","):
            for nj in (1, 2):
                nj_rows.append((s, nj, best(lambda r: emotk_run(s, nj, r))))
        done = fresh_copy(tmp / "data", tmp / "done")
        subprocess.run([*EMOTK, "extract-opensmile", str(done), "--set", "IS09"], check=True, capture_output=True)
        idle = best(lambda r: run_process([*EMOTK, "extract-opensmile", str(done), "--set", "IS09"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()

    import opensmile

    cmd = "python benchmarks/bench_opensmile.py" + (f" --size {args.size}" if args.size != 80 else "")
    lines = [
        *section_head(HEADING, load_start[0], load_end[0], f"opensmile {opensmile.__version__}", cmd),
        f"Synthetic EmoDB (`emotk make-synthetic-corpus emodb DIR --size {args.size} --seed 1`): {args.size} utterances, "
        f"{audio / 60:.1f} min of 16 kHz speech. Functionals; each run is a whole process (Python start-up and imports "
        f"included), fastest of {args.repeats}. x real time per core = audio seconds / CPU seconds. "
        "Reference: the opensmile package's own loop, `Smile.process_file` on each wav, in one process.", "",
        "| feature set | dim | emotk extract-opensmile CPU s | x real time per core | package loop CPU s | "
        "x real time per core | emotk / package time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s, dim, (_, cpu), (_, ref_cpu) in rows:
        lines.append(f"| {s} | {dim} | {cpu:.2f} | {audio / cpu:.0f} | {ref_cpu:.2f} | {audio / ref_cpu:.0f} | "
                     f"{cpu / ref_cpu:.2f} |")
    lines += ["", f"A run that finds its output up to date (start-up, audio digest, check) takes {idle[0]:.2f} s "
              f"wall, {idle[1]:.2f} s CPU.", "",
              "`--nj`: worker processes (spawned; each imports opensmile and parses the set's config once):", "",
              "| feature set | --nj | wall s | CPU s | x real time (wall) | x real time per core |",
              "|---|---:|---:|---:|---:|---:|"]
    for s, nj, (wall, cpu) in nj_rows:
        lines.append(f"| {s} | {nj} | {wall:.2f} | {cpu:.2f} | {audio / wall:.0f} | {audio / cpu:.0f} |")
    publish(HEADING, lines, not args.no_write)


if __name__ == "__main__":
    main()
