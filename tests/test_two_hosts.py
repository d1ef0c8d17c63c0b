"""Data-parallel training across two hosts: two network namespaces made here, joined by
a veth pair whose two addresses are the only ones either has, Open MPI launching one
rank in each over TCP (shared memory off, its daemons and messages on that pair only).
A short examples/mlm.py run with the default dropout gives the one-process losses, and a
rank killed on the second host ends the job with the last checkpoint loadable. Skipped
with one line where namespaces cannot be made (not root, no ``ip``) or without Open MPI."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import kill_a_rank_after_a_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLM = os.path.join(ROOT, "examples", "mlm.py")
SMALL = ["--steps", "20", "--builtin-sentences", "600", "--n-layers", "2", "--batch-size", "12", "--d-model", "16",
         "--n-heads", "2", "--d-ff", "32", "--eval-every", "100", "--threads", "1", "--no-progress"]
SUBNET, FIRST, SECOND = "10.77.0.0/24", "10.77.0.1", "10.77.0.2"


def ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """The two "hosts": (namespace of the first, namespace of the second, the launch
    agent that runs a command on the second, as ssh would)."""
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: skipping the two-host test")
    if not shutil.which("mpirun"):
        pytest.skip("mpirun is not installed: skipping the two-host test")
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("making network namespaces needs Linux, root and iproute2's ip: skipping the two-host test")
    tag = os.getpid() % 100000
    first, second = f"tgnlp{tag}a", f"tgnlp{tag}b"
    made = ip("netns", "add", first)
    if made.returncode:
        pytest.skip(f"cannot make a network namespace: {made.stderr.strip()}")
    ip("netns", "add", second)
    try:
        for step in (["link", "add", f"tg{tag}a", "type", "veth", "peer", "name", f"tg{tag}b"],
                     ["link", "set", f"tg{tag}a", "netns", first], ["link", "set", f"tg{tag}b", "netns", second],
                     ["-n", first, "addr", "add", f"{FIRST}/24", "dev", f"tg{tag}a"],
                     ["-n", second, "addr", "add", f"{SECOND}/24", "dev", f"tg{tag}b"],
                     ["-n", first, "link", "set", f"tg{tag}a", "up"], ["-n", second, "link", "set", f"tg{tag}b", "up"],
                     ["-n", first, "link", "set", "lo", "up"], ["-n", second, "link", "set", "lo", "up"]):
            done = ip(*step)
            if done.returncode:
                pytest.skip(f"cannot join the namespaces: ip {' '.join(step)}: {done.stderr.strip()}")
        agent = tmp_path_factory.mktemp("agent") / "on_second_host.sh"
        agent.write_text(f'#!/bin/sh\n# {SECOND} <command>: run the command on the second host\nshift\n'
                         f'exec ip netns exec {second} sh -c "$*"\n')
        agent.chmod(0o755)
        yield first, second, str(agent)
    finally:
        ip("netns", "del", first)
        ip("netns", "del", second)


def launch(hosts, *args):
    """mpirun in the first namespace, one rank on each host, everything over the veth pair."""
    first, _, agent = hosts
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    command = ["ip", "netns", "exec", first, "mpirun", "--host", f"{FIRST}:1,{SECOND}:1",
               "--mca", "plm_rsh_agent", agent, "--mca", "btl", "tcp,self",
               "--mca", "btl_tcp_if_include", SUBNET, "--mca", "oob_tcp_if_include", SUBNET,
               "-x", "PATH", *(["-x", "PYTHONPATH"] if "PYTHONPATH" in env else []),
               sys.executable, "-m", "mpi4py", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_hosts_give_the_one_process_losses(hosts, tmp_path):
    one = subprocess.run([sys.executable, MLM, *SMALL, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    job = launch(hosts, MLM, *SMALL, "--out", str(tmp_path / "two"))
    _, err = job.communicate(timeout=300)
    assert job.returncode == 0, err[-3000:]
    a, b = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("one", "two"))
    assert b["world_size"] == 2 and b["rows_per_process"] == [6, 6]
    losses_a, losses_b = np.array(a["train_loss"]), np.array(b["train_loss"])
    assert len(losses_a) == 20 and np.abs(losses_a - losses_b).max() <= 1e-5 * np.abs(losses_a).max()


def pid_on_host(namespace, marker):
    """The pid of the Python process in network namespace ``namespace`` whose command
    line holds ``marker`` (the rank on that host)."""
    wanted = os.stat(f"/run/netns/{namespace}").st_ino
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            if marker in cmdline and "mpi4py" in cmdline and os.stat(f"/proc/{pid}/ns/net").st_ino == wanted:
                return int(pid)
        except OSError:
            continue
    return None


def test_a_rank_killed_on_the_second_host_ends_the_job_and_the_checkpoint_loads(hosts, tmp_path):
    path = tmp_path / "run.npz"
    args = [a if a != "20" else "100000" for a in SMALL]
    job = launch(hosts, MLM, *args, "--out", str(tmp_path / "out"), "--checkpoint", str(path), "--save-every", "5")
    kill_a_rank_after_a_checkpoint(job, path, lambda: pid_on_host(hosts[1], str(tmp_path / "out")))
