"""Fixtures shared by several test modules.

Everything a test needs lives inside the repository: ``tests/fixtures/`` holds the facts
copied from the reference material (the released networks' parameter names and shapes,
the original code's configs), so the suite passes in a clone with nothing beside it.
"""
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A synthetic-face set small enough for a training run of a few seconds.
TINY_DATA = dict(num_train_identities=4, num_test_identities=3, images_per_identity=3,
                 num_val_images=2, num_mafl_train=2, num_mafl_test=6, seed=1)


@pytest.fixture(scope="session")
def released_state_dict_keys():
    """{network description: {parameter or buffer name: shape}} of the released DVE
    checkpoints, in their order (``tests/fixtures/released_state_dict_keys.json``)."""
    return json.loads((FIXTURES / "released_state_dict_keys.json").read_text())


def write_tiny_config(tmp_path: Path, epochs: int = 2, tensorboard: bool = False,
                      loss: str = "dense_correlation_loss_dve") -> Path:
    """A SmallNet-8d embedding config on the tiny synthetic set, everything under
    ``tmp_path``; written as ``configs/tiny/smallnet.json`` (experiment ``tiny-smallnet``)."""
    config = {
        "n_gpu": 1, "batch_size": 4, "bias_lr": 1e-5,
        "arch": {"type": "SmallNet", "args": {"num_output_channels": 8}},
        "dataset": {"type": "SyntheticFaces",
                    "args": {"root": str(tmp_path / "data" / "synthetic"), "imwidth": 32,
                             "crop": 4, **TINY_DATA}},
        "warper": {"type": "Warper", "args": {}},
        "optimizer": {"type": "Adam", "args": {"lr": 1e-3, "weight_decay": 0, "amsgrad": True}},
        "loss": loss, "loss_args": {"normalize_vectors": False},
        "metrics": [], "visualizations": ["sphere_colormap", "sphere_rand_proj_colormap"],
        "lr_scheduler": {"type": "MultiStepLR", "args": {"milestones": [1], "gamma": 0.1}},
        "trainer": {"epochs": epochs, "save_dir": str(tmp_path / "saved"), "save_period": 1,
                    "verbosity": 2, "monitor": "off", "early_stop": 10,
                    "tensorboardX": tensorboard, "log_dir": str(tmp_path / "saved")},
    }
    path = tmp_path / "configs" / "tiny" / "smallnet.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def only_run_folder(tmp_path: Path) -> Path:
    """The single run folder of the ``tiny-smallnet`` experiment under ``tmp_path``."""
    (folder,) = (tmp_path / "saved" / "models" / "tiny-smallnet").iterdir()
    return folder


@pytest.fixture
def tiny_config():
    """``write_tiny_config(tmp_path, epochs=2, tensorboard=False, loss=...)`` -> config path."""
    return write_tiny_config


@pytest.fixture
def run_folder():
    """``only_run_folder(tmp_path)`` -> the run folder of the tiny experiment."""
    return only_run_folder


class ArchiveServer:
    """Serves ``files`` (URL path -> bytes) with Range support; records every request.
    ``drop_after`` (one request) sends that many body bytes then closes; ``ignore_range``
    answers 200 with the whole file."""

    def __init__(self):
        self.files, self.requests = {}, []
        self.drop_after, self.ignore_range = None, False
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                range_header = self.headers.get("Range")
                state.requests.append((self.path, range_header))
                body = state.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if range_header and not state.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if state.drop_after is not None:
                    payload, state.drop_after = payload[:state.drop_after], None
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/datasets"


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    archive_server = ArchiveServer()
    thread = threading.Thread(target=archive_server.httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield archive_server
    archive_server.httpd.shutdown()
    archive_server.httpd.server_close()
    thread.join()
