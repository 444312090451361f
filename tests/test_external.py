"""Tests for collabc.external: registry, download from a local HTTP server, verification, cache, offline errors."""
import hashlib
import http.server
import io
import os
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from collabc.external import (ENV_DATA, ENV_HOME, URLs, ChecksumError, DownloadError, UnsafeArchiveError,
                              cache_root, dataset_info, register_dataset, registered_urls, unregister_dataset,
                              untar_data)

_REAL_COLLABC_DATA = os.environ.get(ENV_DATA)  # read before the autouse fixture clears it

U_DATA = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
U_ITEM = b"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|0|1\n"


def make_zip(members):
    "Bytes of a zip holding `members` ({name: bytes})."
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


MINI_ZIP = make_zip({'mini-ml/u.data': U_DATA, 'mini-ml/u.item': U_ITEM, 'mini-ml/README': b'mini\n'})


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def md5(b):
    return hashlib.md5(b).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    "Serves `server.files[path] = (body, opts)`; opts: send_length (bool), truncate_to (int)."

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests.append(self.path)
        if self.path not in srv.files:
            self.send_error(404, 'not here')
            return
        body, opts = srv.files[self.path]
        self.send_response(200)
        self.send_header('Content-Type', 'application/zip')
        if opts.get('send_length', True):
            self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body[:opts.get('truncate_to', len(body))])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    "A local HTTP server on 127.0.0.1 (random free port) in a thread; shut down and closed at the end."
    srv = http.server.HTTPServer(('127.0.0.1', 0), _Handler)
    srv.files, srv.requests, srv.lock = {}, [], threading.Lock()
    srv.base_url = f'http://127.0.0.1:{srv.server_address[1]}'
    t = threading.Thread(target=srv.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    "Never touch the real home or a real COLLABC_DATA: HOME and COLLABC_HOME point into tmp_path."
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.setenv(ENV_HOME, str(tmp_path / 'collabc-home'))
    monkeypatch.delenv(ENV_DATA, raising=False)
    return tmp_path


@pytest.fixture
def register():
    "register_dataset that unregisters what it added at the end of the test."
    added = []

    def _register(url, *args, **kwargs):
        added.append(url)
        return register_dataset(url, *args, **kwargs)
    yield _register
    for url in added:
        unregister_dataset(url)


def serve(server, register, name='mini-ml.zip', body=MINI_ZIP, reg_body=None, folder='mini-ml', **opts):
    "Serve `body` at /name, register the URL with the size/checksums of `reg_body` (default `body`); return url."
    url = f'{server.base_url}/{name}'
    server.files[f'/{name}'] = (body, opts)
    reg = body if reg_body is None else reg_body
    register(url, size=len(reg), md5=md5(reg), sha256=sha256(reg), folder=folder)
    return url


def free_port():
    "A port nothing listens on (bound then released)."
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def listing(p):
    p = Path(p)
    return sorted(x.name for x in p.iterdir()) if p.exists() else []


# ---------------------------------------------------------------------------------------------------- registry


def test_ml100k_registry_entry():
    assert URLs.ML_100k == 'https://files.grouplens.org/datasets/movielens/ml-100k.zip'
    info = dataset_info(URLs.ML_100k)
    assert info.folder == 'ml-100k' and info.fname == 'ml-100k.zip'
    assert info.size == 4_924_029
    assert info.md5 == '0e33842e24a9c977be4e0107933c0723'
    assert info.sha256 == '50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229'
    assert URLs.ML_100k in registered_urls()


def test_unknown_url_raises_value_error(tmp_path):
    url = 'https://example.org/not-registered.zip'
    with pytest.raises(ValueError) as ei:
        untar_data(url, base=tmp_path)
    msg = str(ei.value)
    assert url in msg and URLs.ML_100k in msg
    with pytest.raises(ValueError):
        dataset_info(url)
    assert not (tmp_path / 'archive').exists()


def test_register_validation(register):
    with pytest.raises(ValueError, match='only https'):
        register_dataset('http://example.org/x.zip', size=1, md5='0' * 32)
    with pytest.raises(ValueError, match='checksum'):
        register_dataset('https://example.org/x.zip', size=1)
    with pytest.raises(ValueError, match='md5'):
        register_dataset('https://example.org/x.zip', size=1, md5='xyz')
    with pytest.raises(ValueError, match='folder'):
        register_dataset('https://example.org/x.zip', size=1, md5='0' * 32, folder='../up')
    info = register('https://example.org/data/some-set.zip', size=3, sha256='A' * 64)
    assert (info.folder, info.fname, info.sha256) == ('some-set', 'some-set.zip', 'a' * 64)
    assert 'https://example.org/data/some-set.zip' in registered_urls()


def test_cache_root(tmp_path, monkeypatch):
    assert cache_root(tmp_path / 'b') == tmp_path / 'b'
    assert cache_root() == tmp_path / 'collabc-home'
    monkeypatch.delenv(ENV_HOME)
    assert cache_root() == tmp_path / 'home' / '.collabc'


# ---------------------------------------------------------------------------------------------------- download


def test_download_verify_unpack_then_cache(server, register, tmp_path, capsys):
    url = serve(server, register)
    base = tmp_path / 'cache'
    p = untar_data(url, base=base)
    assert p == base / 'data' / 'mini-ml'
    assert (p / 'u.data').read_bytes() == U_DATA and (p / 'u.item').read_bytes() == U_ITEM
    assert server.requests == ['/mini-ml.zip']
    assert (base / 'archive' / 'mini-ml.zip').read_bytes() == MINI_ZIP
    assert listing(base / 'archive') == ['mini-ml.zip']  # no leftover .part file
    assert listing(base / 'data') == ['mini-ml']  # no leftover temp folder
    err = capsys.readouterr().err
    assert 'Downloading' in err and url in err

    assert untar_data(url, base=base) == p  # second call: cache, no request
    assert len(server.requests) == 1


def test_default_cache_is_collabc_home(server, register, tmp_path):
    url = serve(server, register)
    p = untar_data(url, progress=False)
    assert p == tmp_path / 'collabc-home' / 'data' / 'mini-ml'
    assert not (tmp_path / 'home').exists()


def test_archive_and_data_arguments(server, register, tmp_path):
    url = serve(server, register)
    p = untar_data(url, archive=tmp_path / 'zips', data=tmp_path / 'unpacked', progress=False)
    assert p == tmp_path / 'unpacked' / 'mini-ml' and (p / 'u.data').is_file()
    assert listing(tmp_path / 'zips') == ['mini-ml.zip']


def test_no_content_length(server, register, tmp_path):
    url = serve(server, register, send_length=False)
    p = untar_data(url, base=tmp_path, progress=False)
    assert (p / 'u.data').read_bytes() == U_DATA


def test_archive_already_in_cache_is_used_without_request(server, register, tmp_path):
    url = serve(server, register)
    (tmp_path / 'archive').mkdir()
    (tmp_path / 'archive' / 'mini-ml.zip').write_bytes(MINI_ZIP)
    p = untar_data(url, base=tmp_path, progress=False)
    assert (p / 'u.data').read_bytes() == U_DATA
    assert server.requests == []


def test_corrupt_cached_archive_is_downloaded_again(server, register, tmp_path):
    url = serve(server, register)
    (tmp_path / 'archive').mkdir()
    (tmp_path / 'archive' / 'mini-ml.zip').write_bytes(b'garbage')
    p = untar_data(url, base=tmp_path, progress=False)
    assert (p / 'u.data').read_bytes() == U_DATA
    assert server.requests == ['/mini-ml.zip']


def test_force_download(server, register, tmp_path):
    url = serve(server, register)
    p = untar_data(url, base=tmp_path, progress=False)
    (p / 'stale.txt').write_text('x')
    p2 = untar_data(url, base=tmp_path, force_download=True, progress=False)
    assert p2 == p and not (p / 'stale.txt').exists() and (p / 'u.data').is_file()
    assert len(server.requests) == 2


def test_unregistered_url_with_explicit_checksum(server, tmp_path):
    url = f'{server.base_url}/mini-ml.zip'
    server.files['/mini-ml.zip'] = (MINI_ZIP, {})
    p = untar_data(url, base=tmp_path, sha256=sha256(MINI_ZIP), size=len(MINI_ZIP), progress=False)
    assert p == tmp_path / 'data' / 'mini-ml' and (p / 'u.data').is_file()
    assert url not in registered_urls()


def test_archive_without_top_level_folder(server, register, tmp_path):
    flat = make_zip({'u.data': U_DATA})
    url = serve(server, register, name='flat.zip', body=flat, folder='flat')
    p = untar_data(url, base=tmp_path, progress=False)
    assert p == tmp_path / 'data' / 'flat' and (p / 'u.data').read_bytes() == U_DATA


# ---------------------------------------------------------------------------------------------------- failures


def test_checksum_mismatch_leaves_nothing(server, register, tmp_path):
    other = make_zip({'mini-ml/u.data': U_DATA + b'1\t1\t1\t1\n'})
    tampered = other[:len(MINI_ZIP)].ljust(len(MINI_ZIP), b'\0')  # same size, different bytes
    url = serve(server, register, body=tampered, reg_body=MINI_ZIP)
    with pytest.raises(ChecksumError) as ei:
        untar_data(url, base=tmp_path, progress=False)
    msg = str(ei.value)
    assert url in msg and 'mismatch' in msg
    assert sha256(MINI_ZIP) in msg or md5(MINI_ZIP) in msg  # expected
    assert sha256(tampered) in msg or md5(tampered) in msg  # actual
    assert listing(tmp_path / 'archive') == []
    assert listing(tmp_path / 'data') == []


@pytest.mark.parametrize('send_length', [True, False])
def test_size_mismatch_leaves_nothing(server, register, tmp_path, send_length):
    url = serve(server, register, body=MINI_ZIP + b'extra', reg_body=MINI_ZIP, send_length=send_length)
    with pytest.raises(ChecksumError) as ei:
        untar_data(url, base=tmp_path, progress=False)
    msg = str(ei.value)
    assert url in msg and 'size' in msg and str(len(MINI_ZIP)) in msg
    assert listing(tmp_path / 'archive') == []
    assert listing(tmp_path / 'data') == []


def test_interrupted_transfer_leaves_nothing(server, register, tmp_path):
    url = serve(server, register, truncate_to=len(MINI_ZIP) // 2)
    with pytest.raises(DownloadError) as ei:  # ChecksumError is a DownloadError
        untar_data(url, base=tmp_path, progress=False)
    assert url in str(ei.value)
    assert listing(tmp_path / 'archive') == []
    # a retry once the server is fine again succeeds
    server.files['/mini-ml.zip'] = (MINI_ZIP, {})
    assert (untar_data(url, base=tmp_path, progress=False) / 'u.data').is_file()


def test_connection_refused_is_offline_error(register, tmp_path):
    url = f'http://127.0.0.1:{free_port()}/mini-ml.zip'
    register(url, size=len(MINI_ZIP), sha256=sha256(MINI_ZIP), folder='mini-ml')
    with pytest.raises(DownloadError) as ei:
        untar_data(url, base=tmp_path, progress=False)
    assert isinstance(ei.value, OSError)
    msg = str(ei.value)
    assert url in msg and ENV_DATA in msg
    assert str(tmp_path / 'data' / 'mini-ml') in msg
    assert listing(tmp_path / 'archive') == []


def test_http_error_is_download_error(server, register, tmp_path):
    url = f'{server.base_url}/missing.zip'
    register(url, size=10, md5='0' * 32, folder='missing')
    with pytest.raises(DownloadError, match='404') as ei:
        untar_data(url, base=tmp_path, progress=False)
    assert ENV_DATA in str(ei.value)
    assert listing(tmp_path / 'archive') == []


@pytest.mark.parametrize('evil', ['../evil.txt', 'mini-ml/../../evil.txt', '/tmp/abs-evil.txt',
                                  'C:/evil.txt', 'mini-ml\\..\\..\\evil.txt'])
def test_zip_slip_rejected(server, register, tmp_path, evil):
    body = make_zip({'mini-ml/u.data': U_DATA, evil: b'pwned'})
    url = serve(server, register, name='slip.zip', body=body)
    base = tmp_path / 'deep' / 'cache'
    with pytest.raises(UnsafeArchiveError) as ei:
        untar_data(url, base=base, progress=False)
    assert evil in str(ei.value)
    assert not list(tmp_path.rglob('evil.txt')) and not Path('/tmp/abs-evil.txt').exists()
    assert listing(base / 'data') == []


# ---------------------------------------------------------------------------------------------------- COLLABC_DATA


def test_collabc_data_used_without_network(register, tmp_path, monkeypatch):
    shared = tmp_path / 'shared'
    (shared / 'mini-ml').mkdir(parents=True)
    (shared / 'mini-ml' / 'u.data').write_bytes(U_DATA)
    url = f'http://127.0.0.1:{free_port()}/mini-ml.zip'  # nothing listens there
    register(url, size=len(MINI_ZIP), sha256=sha256(MINI_ZIP), folder='mini-ml')
    monkeypatch.setenv(ENV_DATA, str(shared))
    assert untar_data(url, base=tmp_path / 'cache') == shared / 'mini-ml'
    assert not (tmp_path / 'cache').exists()


def test_collabc_data_without_the_folder_falls_back(server, register, tmp_path, monkeypatch):
    shared = tmp_path / 'shared'
    (shared / 'mini-ml').mkdir(parents=True)  # empty: does not count
    monkeypatch.setenv(ENV_DATA, str(shared))
    url = serve(server, register)
    p = untar_data(url, base=tmp_path / 'cache', progress=False)
    assert p == tmp_path / 'cache' / 'data' / 'mini-ml' and len(server.requests) == 1


def test_offline_message_mentions_collabc_data_value(register, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DATA, str(tmp_path / 'nowhere'))
    url = f'http://127.0.0.1:{free_port()}/mini-ml.zip'
    register(url, size=len(MINI_ZIP), sha256=sha256(MINI_ZIP), folder='mini-ml')
    with pytest.raises(DownloadError) as ei:
        untar_data(url, base=tmp_path, progress=False)
    assert str(tmp_path / 'nowhere') in str(ei.value)


def test_real_ml100k_from_collabc_data(tmp_path, monkeypatch):
    if not _REAL_COLLABC_DATA:
        pytest.skip(f'{ENV_DATA} is not set in the environment')
    folder = Path(_REAL_COLLABC_DATA).expanduser() / 'ml-100k'
    if not (folder / 'u.data').is_file():
        pytest.skip(f'{ENV_DATA}={_REAL_COLLABC_DATA!r} has no ml-100k/u.data')
    monkeypatch.setenv(ENV_DATA, _REAL_COLLABC_DATA)
    p = untar_data(URLs.ML_100k, base=tmp_path / 'cache')
    assert p == folder and (p / 'u.data').is_file()
    assert not (tmp_path / 'cache').exists()
