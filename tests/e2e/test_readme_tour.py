"""The README's five-minute tour, run as written against ``postwire dev up``.

The test copies nothing by hand: it takes the tour's two ``sh`` blocks out of README.md and runs
them with bash in a fresh directory where ``postwire dev up`` runs (with ``.venv`` linked in, as
in a checkout). Only the receiver's port 9000 is replaced by a free one and the service ports
are free ones (tests bind free ports); the retry schedule is the dev stack's own default. Between
the blocks it waits, at most the minute the README promises, for the dead letter to show in
``postwire dlq list``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from deploy.embedded import procs
from deploy.embedded.ports import free_port
from tests.conftest import assert_stops_cleanly, read_until

REPO = Path(__file__).resolve().parents[2]
WAIT_FOR_DEAD_LETTER = """
for _ in $(seq 60); do
  postwire --json dlq list | grep -q "$EVT" && break
  sleep 1
done
echo "waited for the dead letter: ${SECONDS}s since the tour started"
"""


def tour_blocks(readme: str) -> list[str]:
    """The ``sh`` code blocks of the README's tour section, in order."""
    section = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def test_the_readme_tour_works_as_written(tmp_path: Path) -> None:
    blocks = tour_blocks((REPO / "README.md").read_text())
    assert len(blocks) == 2 and "postwire dev env" in blocks[0] and "dlq list" in blocks[1]
    receiver_port = str(free_port())
    script = "set -e\n" + blocks[0].replace("9000", receiver_port) + WAIT_FOR_DEAD_LETTER \
        + blocks[1] + "\nkill %1\n"
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTWIRE_")}
    env.update({"POSTWIRE_INGEST_PORT": str(free_port()),
                "POSTWIRE_DISPATCHER_PORT": str(free_port()),
                "POSTWIRE_ADMIN_PORT": str(free_port()), "PYTHONPATH": str(REPO)})
    dev = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dev", "up", "--pg-port", str(free_port()),
         "--broker-port", str(free_port())], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        banner = read_until(dev, "Ctrl-C")
        assert "retry schedule 0,2,5,10,20 s" in banner, banner
        children = procs.descendants(dev.pid)
        started = time.monotonic()
        tour = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=150,
                              start_new_session=True, check=False)
        elapsed = time.monotonic() - started
        out = tour.stdout + tour.stderr
        assert tour.returncode == 0, out
        event_id = re.search(r'"id":\s*"(evt_\w+)"', out)
        assert event_id, out
        dead = [line.split() for line in tour.stdout.splitlines()
                if event_id.group(1) in line and "retries_exhausted" in line]
        assert dead, out  # `postwire dlq list` shows the dead letter: 5 tries, last 501
        assert dead[0][6:8] == ["5", "501"], dead
        assert re.search(r"^\s+#\s+STARTED\s+MS\s+STATUS", tour.stdout, re.MULTILINE), out
        attempt_rows = re.findall(r"^\s+[1-5]\s+\S+Z\s+\d+\s+501\b", tour.stdout, re.MULTILINE)
        assert len(attempt_rows) == 5, out  # `postwire events show`: five attempts, all 501
        assert "queued" in tour.stdout, out  # `postwire replay` queued it again
        assert "postwire 0.1.0" in out
        assert elapsed < 90, f"the tour took {elapsed:.0f} s: {out}"
    finally:
        assert_stops_cleanly(dev, children if "children" in locals() else [], timeout_s=60)
