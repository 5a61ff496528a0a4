"""Login, sessions, version discovery, arrays and arrays/space."""

import pytest
from pypureclient import flashblade
from pypureclient.configuration import Configuration
from pypureclient.exceptions import PureError

from conftest import API_VERSION, Mock, items


def test_versions_list_1x_and_2x_and_the_sdk_picks_the_newest(mock):
    import json

    import urllib3

    http = urllib3.PoolManager(ca_certs=mock.ca_file, cert_reqs="CERT_REQUIRED")
    r = http.request("GET", f"{mock.ready['url']}/api/api_version")
    versions = json.loads(r.data)["versions"]
    assert versions[0] == "1.0" and "1.12" in versions and versions[-1] == API_VERSION
    # Unpinned, the SDK negotiates the newest version both sides know.
    c = flashblade.Client(
        target=mock.target,
        api_token=mock.token,
        verify_ssl=True,
        configuration=Configuration(ssl_ca_cert=mock.ca_file),
    )
    assert type(c).__module__.split(".")[-2] == "FB_" + API_VERSION.replace(".", "_")


def test_client_logs_in_once_and_reuses_the_session(mock):
    before = mock.control("GET", "counters")["logins"]
    c = mock.client()
    for _ in range(3):
        items(c.get_arrays())
    assert mock.control("GET", "counters")["logins"] == before + 1


def test_wrong_token_is_refused(mock):
    with pytest.raises(PureError):
        flashblade.Client(
            target=mock.target,
            api_token="T-00000000-0000-0000-0000-000000000000",
            verify_ssl=True,
            configuration=Configuration(ssl_ca_cert=mock.ca_file),
            version=API_VERSION,
        )


def test_tls_is_verified_against_the_ca(mock, tmp_path):
    other = Mock()
    try:
        # The other mock's CA does not sign this mock's certificate.
        with pytest.raises(Exception):
            flashblade.Client(
                target=mock.target,
                api_token=mock.token,
                verify_ssl=True,
                configuration=Configuration(ssl_ca_cert=other.ca_file),
                version=API_VERSION,
                retries=0,
            )
    finally:
        other.stop()


def test_expired_session_is_renewed_by_the_sdk(mock):
    c = mock.client()
    items(c.get_arrays())
    logins = mock.control("GET", "counters")["logins"]
    mock.control("POST", "sessions/expire")
    # FlashBlade answers 403; the SDK logs in again and retries once.
    items(c.get_arrays())
    assert mock.control("GET", "counters")["logins"] == logins + 1


def test_expired_session_error_shape_without_retries(mock):
    c = mock.client(retries=0)
    mock.control("POST", "sessions/expire")
    r = c.get_arrays()
    assert isinstance(r, flashblade.ErrorResponse)
    assert r.status_code == 403
    assert "expired" in r.errors[0].message


def test_arrays(fb):
    (a,) = items(fb.get_arrays())
    assert a.os == "Purity//FB"
    assert a.eradication_config.eradication_delay == 3600 * 1000
    assert a.id and a.name


def test_arrays_space(fb, name, mock):
    (before,) = items(fb.get_arrays_space())
    assert before.capacity > 0
    assert items(fb.post_file_systems(names=[name], file_system=flashblade.FileSystemPost()))
    with open(f"{mock.data_dir}/{name}/blob", "wb") as f:
        f.write(b"x" * 10000)
    (after,) = items(fb.get_arrays_space(type="file-system"))
    assert after.space.virtual - before.space.virtual == 10000
    assert after.space.total_used >= 10000


def test_request_id_and_headers(fb):
    r = fb.get_arrays()
    assert r.headers.x_request_id
    # The SDK parses the rate-limit headers (it only does when X-Request-ID is there).
    assert r.headers.ratelimit_limit is not None
    assert r.headers.ratelimit_remaining is not None


def test_patch_arrays_idle_timeout(raw):
    (a,) = items(raw.patch_arrays(array=flashblade.Array(idle_timeout=300000)))
    assert a.idle_timeout == 300000
    (a,) = items(raw.patch_arrays(array=flashblade.Array(idle_timeout=0)))
    assert a.idle_timeout == 0


def test_logout_ends_the_session(mock):
    c = mock.client(retries=0)
    items(c.get_arrays())
    before = mock.control("GET", "counters")
    c.logout()
    after = mock.control("GET", "counters")
    assert after["logouts"] == before["logouts"] + 1
    assert after["live_sessions"] == before["live_sessions"] - 1


def test_get_versions_through_the_sdk(fb):
    r = fb.get_versions()
    assert r.status_code == 200
