"""What the tests of the command-line scripts share: CPU arguments, config rewriting, and the
check that a script logged exactly one error line and no traceback."""
import json
import logging

BASE_ARGS = ["--device", "cpu", "--disable_workers"]


def rewrite(path, update):
    config = json.loads(path.read_text())
    update(config)
    path.write_text(json.dumps(config))
    return path


def one_error(caplog, capsys) -> str:
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    captured = capsys.readouterr()
    assert "\n" not in message and "Traceback" not in captured.out + captured.err
    return message
