"""`make run-s3`: the pipeline in S3 mode on this machine. Starts SeaweedFS (S3 on
127.0.0.1:8333, data in .seaweedfs/), copies data/samples/ into the bucket when it is
empty, then runs `dg dev` (UI on :3000) with INGEST_LANDING_URL=s3://landing and
the AWS_* variables pointing at it, and `ingestion-pipeline serve` (API on :8000).
Ctrl+C stops all three."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from . import seaweedfs


def seed(server: seaweedfs.SeaweedS3, samples: Path) -> int:
    client = server.client()
    if client.list_objects_v2(Bucket=server.bucket, MaxKeys=1).get("KeyCount", 0):
        return 0
    n = 0
    for path in sorted(p for p in samples.rglob("*") if p.is_file()):
        client.upload_file(str(path), server.bucket, path.relative_to(samples).as_posix())
        n += 1
    return n


def main() -> None:
    seaweedfs.exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=".seaweedfs")
    parser.add_argument("--s3-port", type=int, default=8333)
    parser.add_argument("--ui-port", type=int, default=3000)
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--samples", default="data/samples")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    server = None
    children: list[subprocess.Popen] = []
    try:
        server = seaweedfs.start(Path(args.dir).resolve(), "landing", s3_port=args.s3_port)
        seeded = seed(server, Path(args.samples))
        env = {**os.environ, **server.env()}
        env.setdefault("INGEST_API_KEYS", "local-dev-key")
        print(
            f"SeaweedFS S3 at {server.endpoint_url} (bucket {server.bucket}, {seeded} sample file(s) copied in)\n"
            f"Dagster UI at http://127.0.0.1:{args.ui_port}, ingestion API at http://127.0.0.1:{args.api_port} "
            f"(x-api-key from INGEST_API_KEYS, default local-dev-key)\n"
            "To use the bucket from another shell:\n" + "".join(f"  export {k}={v}\n" for k, v in server.env().items()),
            flush=True,
        )
        children.append(
            subprocess.Popen([str(bin_dir / "ingestion-pipeline"), "serve", "--host", "127.0.0.1", "--port", str(args.api_port)], env=env)
        )
        children.append(
            subprocess.Popen([str(bin_dir / "dg"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.ui_port)], env=env)
        )
        children[-1].wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
