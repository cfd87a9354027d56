"""The HTTP health endpoint (``--health-port``) off loopback: clients must send the token (the bind refusal
without one is in test_security)."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request

import pytest

from suggest_ls.harness.raw import RawServer

from .test_security import TOKEN


def test_health_endpoint_off_loopback_needs_the_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SUGGEST_LS_TOKEN"}
    srv = RawServer(("--health-port", "0.0.0.0:0"), env={**env, "SUGGEST_LS_TOKEN": TOKEN}, workdir=str(tmp_path))
    try:
        for _ in range(300):
            found = re.search(r"health endpoint on http://[\d.]+:(\d+)", srv.log_text())
            if found:
                break
            time.sleep(0.05)
        assert found, srv.tail_log()
        url = f"http://127.0.0.1:{found.group(1)}/health"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=10)
        assert denied.value.code == 401
        wrong = urllib.request.Request(url, headers={"Authorization": "Bearer " + TOKEN[:-1]})
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(wrong, timeout=10)
        assert denied.value.code == 401
        right = urllib.request.Request(url, headers={"Authorization": "Bearer " + TOKEN})
        try:
            body = json.loads(urllib.request.urlopen(right, timeout=10).read())
        except urllib.error.HTTPError as exc:  # 503 while the model is not loaded yet: still an answer
            body = json.loads(exc.read())
        assert "status" in body
    finally:
        srv.kill()
