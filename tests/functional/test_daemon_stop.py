"""A stopping worker ends its MultiLangDaemon once every record processor has exited, instead of
waiting for the KCL's failover-bounded final shutdown (consumers/runtime/daemon.py). Real
processes stand in for the JVM and its record processors: a parent that ignores SIGTERM (as
the KCL keeps waiting) and its children."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from consumers.runtime.daemon import _children, _end_once_processors_exited

# a "JVM" that ignores SIGTERM, starts two "record processors" living `child_s`, then waits long
_JVM = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(%s)"]) for _ in range(2)]
print("ready", flush=True)
for child in children:
    child.wait()
time.sleep(120)
"""


def _jvm(child_s: float) -> subprocess.Popen:
    jvm = subprocess.Popen([sys.executable, "-c", _JVM % child_s], stdout=subprocess.PIPE, text=True)
    assert jvm.stdout.readline().strip() == "ready"
    return jvm


def test_the_jvm_is_ended_once_its_record_processors_have_exited():
    jvm = _jvm(child_s=2)
    try:
        assert len(_children(jvm.pid)) == 2
        jvm.send_signal(signal.SIGTERM)  # ignored: the "KCL" keeps waiting
        ender = threading.Thread(target=_end_once_processors_exited, args=(jvm,))
        ender.start()
        time.sleep(1)
        assert jvm.poll() is None, "ended while its record processors still ran"
        ender.join(timeout=30)
        assert not ender.is_alive(), "the JVM was not ended once its record processors had exited"
        assert jvm.wait(timeout=10) == -signal.SIGKILL
    finally:
        jvm.kill()
