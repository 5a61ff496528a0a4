"""Fixtures: a mock-flashblade process per test module and SDK clients bound to
it over verified TLS."""

import json
import os
import subprocess
import tempfile
import uuid

import pytest
import urllib3
from pypureclient import flashblade
from pypureclient.configuration import Configuration

API_VERSION = "2.17"


class Mock:
    def __init__(self, extra_args=()):
        self.dir = tempfile.TemporaryDirectory(prefix="fb-contract-")
        binary = os.environ.get("MOCK_FLASHBLADE_BIN", "target/debug/mock-flashblade")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--state-dir", self.dir.name, *extra_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("mock-flashblade printed no ready line")
        self.ready = json.loads(line)
        self.target = self.ready["url"].split("://", 1)[1]
        self.token = self.ready["api_token"]
        self.ca_file = self.ready["ca_file"]
        self.data_dir = self.ready["data_dir"]

    def client(self, **kw):
        cfg = Configuration(ssl_ca_cert=self.ca_file)
        return flashblade.Client(
            target=self.target,
            api_token=self.token,
            verify_ssl=True,
            configuration=cfg,
            version=API_VERSION,
            **kw,
        )

    def control(self, method, path, body=None):
        http = urllib3.PoolManager(ca_certs=self.ca_file, cert_reqs="CERT_REQUIRED")
        r = http.request(
            method,
            f"{self.ready['url']}/mock/{path}",
            body=None if body is None else json.dumps(body),
            headers={"content-type": "application/json"},
        )
        assert r.status == 200, r.data
        return json.loads(r.data)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.dir.cleanup()


@pytest.fixture(scope="module")
def mock():
    m = Mock(["--eradication-delay", "1h"])
    yield m
    m.stop()


@pytest.fixture(scope="module")
def fb(mock):
    return mock.client()


@pytest.fixture(scope="module")
def raw(mock):
    """A client that does not retry, so raw error answers can be asserted."""
    return mock.client(retries=0)


@pytest.fixture
def name():
    return "ct-" + uuid.uuid4().hex[:12]


def items(resp):
    assert isinstance(resp, flashblade.ValidResponse), getattr(resp, "errors", resp)
    return list(resp.items)


def error(resp, status=400):
    assert isinstance(resp, flashblade.ErrorResponse), resp
    assert resp.status_code == status, (resp.status_code, resp.errors)
    return resp.errors[0]
