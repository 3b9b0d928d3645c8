"""`dg dev` as `make run` starts it, for the operator's-view tests and
bench/latency.py: a temp DAGSTER_HOME holding the repo's deploy/dagster.yaml, a free
port on 127.0.0.1, GraphQL to drive it, and a stop that leaves no process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from .seaweedfs import free_port

ROOT = Path(__file__).resolve().parents[2]  # the repository: workspace.yaml, deploy/dagster.yaml
INSTANCE_YAML = ROOT / "deploy" / "dagster.yaml"  # the instance template `make run` copies into DAGSTER_HOME
LOCATION = "ingestion_pipeline"


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of live processes whose environment has name=value (ours: the temp DAGSTER_HOME)."""
    needle = f"{name}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


class GraphQL:
    """Calls the webserver's GraphQL endpoint; raises on GraphQL errors."""

    def __init__(self, url: str):
        url = url.rstrip("/")
        self.url = url if url.endswith("/graphql") else url + "/graphql"

    def __call__(self, query: str, **variables) -> dict:
        response = requests.post(self.url, json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]


class DagsterDev:
    """`dg dev -w workspace.yaml` in its own process group (session)."""

    def __init__(self, home: Path, env: dict[str, str], log_path: Path):
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(INSTANCE_YAML, home / "dagster.yaml")  # the Makefile's `home` target
        self.home = home
        self.port = free_port()
        self.gql = GraphQL(f"http://127.0.0.1:{self.port}")
        self.log_path = log_path
        dg = Path(sys.executable).with_name("dg")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(dg), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
                cwd=ROOT,
                env={**os.environ, **env, "DAGSTER_HOME": str(home)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_for_code_location(self, timeout: float = 180) -> None:
        query = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
                     locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dg dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                entries = self.gql(query)["workspaceOrError"]["locationEntries"]
            except (requests.RequestException, RuntimeError, KeyError):
                entries = []
            entry = next((e for e in entries if e["name"] == LOCATION), None)
            if entry and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                if loaded["__typename"] != "RepositoryLocation":
                    raise RuntimeError(f"code location failed to load: {loaded}")
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"code location not loaded within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> list[int]:
        """SIGINT to the group (dg dev shuts its children down), then SIGTERM,
        then SIGKILL; then kills by pid whatever still carries our DAGSTER_HOME.
        Returns the pids that had to be killed that way (none after a clean stop)."""
        for sig, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            # dg dev is gone; give its children the same grace before escalating.
            deadline = time.monotonic() + grace
            while processes_with_env("DAGSTER_HOME", str(self.home)) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not processes_with_env("DAGSTER_HOME", str(self.home)):
                break
        stray = processes_with_env("DAGSTER_HOME", str(self.home))
        for pid in stray:  # e.g. a run worker that left the group; ours by its environment
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return stray
