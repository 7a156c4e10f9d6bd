"""Job image inputs: base64, data URIs, URLs (https-only, no internal addresses), size bounds, names."""

from __future__ import annotations

import base64
import http.server
import threading

import pytest

from tests.graphs import input_png
from worker.config import WorkerSettings
from worker.errors import InvalidInput
from worker.images import load_image, safe_name

PNG = input_png(8, 8)
DEFAULT = WorkerSettings()


@pytest.fixture(scope="module")
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path == "/redirect-internal":
                self.send_response(302)
                self.send_header("Location", "http://10.0.0.1/x.png")
                self.end_headers()
                return
            body = {"/img.png": PNG, "/big.png": PNG + b"\0" * 3000, "/text": b"hello"}.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_base64_and_data_uri():
    b64 = base64.b64encode(PNG).decode()
    assert load_image(b64, "params.image", DEFAULT) == PNG
    assert load_image(f"data:image/png;base64,{b64}", "params.image", DEFAULT) == PNG
    assert load_image(b64[:20] + "\n" + b64[20:], "params.image", DEFAULT) == PNG  # line breaks tolerated


@pytest.mark.parametrize("value, fragment", [
    ("not base64 at all!", "neither valid base64"),
    (base64.b64encode(b"plain text").decode(), "not a PNG"),
    ("data:image/png,abc", "base64-encoded"),
    ("", "must be a base64 string"),
    (123, "must be a base64 string"),
    ("ftp://example.com/x.png", "https"),
])
def test_bad_values_name_the_field(value, fragment):
    with pytest.raises(InvalidInput) as err:
        load_image(value, "images[0].image", DEFAULT)
    assert err.value.fields["field"] == "images[0].image" and fragment in err.value.message


def test_size_bound_on_base64():
    small = DEFAULT.with_(max_input_bytes=100)
    with pytest.raises(InvalidInput, match="larger than"):
        load_image(base64.b64encode(PNG + b"\0" * 500).decode(), "params.image", small)


@pytest.mark.parametrize("url", ["https://127.0.0.1/x.png", "https://localhost/x.png", "https://10.1.2.3/x.png",
                                 "https://169.254.169.254/latest/meta-data", "https://[::1]/x.png",
                                 "https://192.168.0.10/x.png"])
def test_internal_addresses_refused_by_default(url):
    with pytest.raises(InvalidInput, match="non-public address"):
        load_image(url, "params.image", DEFAULT)


def test_http_refused_unless_allowed(http_server):
    with pytest.raises(InvalidInput, match="must use https"):
        load_image(f"{http_server}/img.png", "params.image", DEFAULT.with_(allow_private_urls=True))


def test_url_fetch_when_allowed(http_server):
    permissive = DEFAULT.with_(allow_http_urls=True, allow_private_urls=True)
    assert load_image(f"{http_server}/img.png", "params.image", permissive) == PNG
    with pytest.raises(InvalidInput, match="HTTP 404"):
        load_image(f"{http_server}/missing.png", "params.image", permissive)
    with pytest.raises(InvalidInput, match="larger than"):
        load_image(f"{http_server}/big.png", "params.image", permissive.with_(max_input_bytes=1000))
    with pytest.raises(InvalidInput, match="not a PNG"):
        load_image(f"{http_server}/text", "params.image", permissive)


def test_redirect_hops_are_rechecked(http_server, monkeypatch):
    """The test server itself is on loopback, so only its host is let through; the redirect target
    (10.0.0.1) goes through the real check and must be refused."""
    import worker.images as images

    real = images.check_url

    def let_test_server_through(url, field, settings):
        if url.startswith(http_server):
            return None
        return real(url, field, settings)

    monkeypatch.setattr(images, "check_url", let_test_server_through)
    with pytest.raises(InvalidInput, match=r"non-public address \(10\.0\.0\.1\)"):
        load_image(f"{http_server}/redirect-internal", "params.image", DEFAULT.with_(allow_http_urls=True))


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b.png", "a\\b.png", ".hidden", "", "x" * 200, "a\nb.png", None, 3])
def test_unsafe_names_refused(name):
    with pytest.raises(InvalidInput, match="must be a file name"):
        safe_name(name, "images[1].name")


def test_safe_name_kept():
    assert safe_name("frame_001.png", "images[0].name") == "frame_001.png"


def test_embedded_model_url_rules():
    from model_fetch._urlguard import UrlRefused, check_embedded_url

    allowed = ("huggingface.co",)
    assert check_embedded_url("https://cdn.huggingface.co/x.gguf", "x.gguf", "diffusion_models", allowed, True)
    for url, name, folder, rule in (
            ("https://huggingface.co/x.ckpt", "x.ckpt", "checkpoints", "only .safetensors"),
            ("https://huggingface.co/x.pt", "x.pt", "custom_folder", "'.pt' files are fetched"),
            ("https://user:pw@huggingface.co/x.gguf", "x.gguf", "loras", "credentials"),
            ("https://evilhuggingface.co/x.gguf", "x.gguf", "loras", "not in MODEL_FETCH_ALLOWED_HOSTS"),
            ("file:///etc/passwd", "x.gguf", "loras", "only https://")):
        with pytest.raises(UrlRefused, match=rule):
            check_embedded_url(url, name, folder, allowed, True)
    with pytest.raises(UrlRefused, match="non-public address"):
        check_embedded_url("https://127.0.0.1/x.gguf", "x.gguf", "loras", ("127.0.0.1",), False)
