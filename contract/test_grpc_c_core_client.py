"""The driver as a C-core gRPC client meets it: Python grpcio with no channel
options sends the unix socket's path as the HTTP/2 :authority. Every call
must work, repeatedly on one channel (later requests use HPACK's dynamic
table) and on fresh channels."""

import os
import subprocess
import tempfile
import time

import grpc
import pytest


@pytest.fixture(scope="module")
def socket_path():
    binary = os.environ.get("FLASHBLADE_CSI_BIN", "target/debug/flashblade-csi")
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "csi.sock")
        kubelet = os.path.join(d, "kubelet")
        os.mkdir(kubelet)
        proc = subprocess.Popen(
            [binary, "serve", "--mode", "node", "--node-id", "node-a",
             "--endpoint", f"unix://{sock}", "--kubelet-dir", kubelet],
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                if os.path.exists(sock):
                    break
                time.sleep(0.025)
            yield sock
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def call(channel, method, payload=b""):
    return channel.unary_unary(method)(payload, timeout=5)


def test_identity_and_node_calls_work_from_grpcio(socket_path):
    with grpc.insecure_channel(f"unix://{socket_path}") as ch:
        for _ in range(20):
            info = call(ch, "/csi.v1.Identity/GetPluginInfo")
            assert b"flashblade.csi.dev" in info
            assert call(ch, "/csi.v1.Identity/GetPluginCapabilities")
            node = call(ch, "/csi.v1.Node/NodeGetInfo")
            assert b"node-a" in node


def test_errors_arrive_as_grpc_statuses(socket_path):
    with grpc.insecure_channel(f"unix:{socket_path}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            # NodeStageVolume with an empty request: INVALID_ARGUMENT.
            call(ch, "/csi.v1.Node/NodeStageVolume")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "volume_id" in e.value.details()


def test_many_fresh_channels(socket_path):
    for _ in range(10):
        with grpc.insecure_channel(f"unix://{socket_path}") as ch:
            assert b"flashblade.csi.dev" in call(ch, "/csi.v1.Identity/GetPluginInfo")
