"""Measuring a process tree: wall time and peak memory (PSS and RSS summed), and whether an LLM
engine is still running."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Self

import psutil

ROOT = Path(__file__).resolve().parents[2]

LLM_MARKERS = ("vllm", "sparse_assets.llm.worker", "VLLM::", "EngineCore")


class TreeSampler:
    """Samples the memory of a process and all its descendants every `interval` seconds.

    Keeps the peak of the whole tree, and the peak of every process's own subtree (so that a step
    process's peak includes its LLM worker). The figure is PSS (proportional set size: a page shared
    by n processes counts 1/n in each), summed; RSS summed is kept too, an upper bound that counts
    shared pages (torch libraries, vLLM's engine process) once per process."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.root = pid
        self.interval = interval
        self.peak_mb = 0.0  # PSS summed over the tree
        self.peak_rss_sum_mb = 0.0  # RSS summed: counts shared pages once per process (an upper bound)
        self.subtree_peak_mb: dict[int, float] = {}
        self.subtree_peak_rss_mb: dict[int, float] = {}
        self.proc_peak_mb: dict[int, float] = {}  # each process's own peak PSS
        self.cmdlines: dict[int, str] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.root)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            self.sample(root)
            self._stop.wait(self.interval)

    def sample(self, root: psutil.Process) -> None:
        rss: dict[int, float] = {}
        pss: dict[int, float] = {}
        parent: dict[int, int] = {}
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            try:
                info = proc.memory_full_info()  # PSS: shared pages split between the processes sharing them
                rss[proc.pid] = info.rss / 2**20
                pss[proc.pid] = getattr(info, "pss", info.rss) / 2**20
                parent[proc.pid] = proc.ppid()
                if proc.pid not in self.cmdlines or "spawn_main" in self.cmdlines[proc.pid]:
                    # multiprocessing children rename themselves after start (vLLM: "VLLM::Worker")
                    self.cmdlines[proc.pid] = " ".join(proc.cmdline())[:200]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        if not rss:
            return
        self.samples += 1
        self.peak_mb = max(self.peak_mb, sum(pss.values()))
        self.peak_rss_sum_mb = max(self.peak_rss_sum_mb, sum(rss.values()))
        for pid, mb in pss.items():
            self.proc_peak_mb[pid] = max(self.proc_peak_mb.get(pid, 0.0), mb)
        for values, peaks in ((pss, self.subtree_peak_mb), (rss, self.subtree_peak_rss_mb)):
            subtree = dict(values)
            for pid in values:  # add each process's memory to every ancestor inside the tree
                up = parent.get(pid)
                while up in values:
                    subtree[up] += values[pid]
                    up = parent.get(up)
            for pid, mb in subtree.items():
                peaks[pid] = max(peaks.get(pid, 0.0), mb)


def llm_processes(exclude: set[int] = frozenset()) -> list[str]:
    """Running vLLM engines / LLM workers on this machine (not ours): never start a second engine."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            line = " ".join(proc.info["cmdline"] or []) or proc.info["name"] or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if proc.info["pid"] in exclude or proc.info["pid"] == os.getpid():
            continue
        if any(marker in line for marker in LLM_MARKERS) and "run_bench.py" not in line:
            found.append(f"{proc.info['pid']}: {line[:120]}")
    return found


def wait_for_no_llm(max_wait_s: float, log) -> None:
    deadline = time.time() + max_wait_s
    while True:
        busy = llm_processes()
        if not busy:
            return
        if time.time() > deadline:
            raise SystemExit(
                f"another vLLM engine / LLM worker is running ({busy[0]}); waited {max_wait_s:.0f} s. "
                "Run the benchmark when it has finished (never two engines at once on this machine)."
            )
        log(f"waiting for another LLM process to finish: {busy[0]}")
        time.sleep(15)


def run_measured(command: list[str], env: dict, log_file: Path, cwd: Path = ROOT, interval: float = 0.5) -> dict:
    """Run `command` (a subprocess tree), sampling its memory; wall time, peak RSS, exit code."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        with TreeSampler(process.pid, interval) as sampler:
            code = process.wait()
        wall = time.perf_counter() - start
    top = sorted(sampler.proc_peak_mb.items(), key=lambda kv: -kv[1])[:6]
    return {
        "command": " ".join(command),
        "wall_s": round(wall, 2),
        "peak_mb": round(sampler.peak_mb, 1),
        "largest_processes": [{"pid": pid, "peak_pss_mb": round(mb, 1), "cmdline": sampler.cmdlines.get(pid, "")[:100]} for pid, mb in top],
        "peak_rss_sum_mb": round(sampler.peak_rss_sum_mb, 1),
        "returncode": code,
        "log": str(log_file.relative_to(ROOT) if log_file.is_relative_to(ROOT) else log_file),
        "_sampler": sampler,
    }
