"""Writes that never leave a half-written artifact behind."""

import contextlib
import json
import os
import shutil
import socket
import urllib.parse
import uuid


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary file name beside `path`; renames it to `path` on success.

    The temporary name keeps `path`'s whole extension (`.weights.h5`, not
    just `.h5`), for writers that infer the format from it (Keras,
    Matplotlib, PIL, NumPy). On failure it is removed and `path` is left as
    it was.
    """
    directory, name = os.path.split(path)
    stem, dot, extension = name.partition(".") if not name.startswith(".") else (name, "", "")
    tmp = os.path.join(directory, f"{stem}.tmp-{uuid.uuid4().hex}{dot}{extension}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json_atomically(path, value):
    """Writes `value` as JSON to `path` via a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def replace_directory(build, path):
    """Calls `build(tmp_dir)`, then moves the finished directory to `path`.

    The new directory is written beside `path` and renamed into place, so a
    crash never leaves a half-written directory where a reader looks; an
    existing `path` is swapped out and removed only afterwards.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tag = uuid.uuid4().hex
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{tag}")
    old = os.path.join(parent, f".{os.path.basename(path)}.old-{tag}")
    try:
        build(tmp)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def save_keras_atomically(model, path):
    """`model.save(path)` through a temporary `.keras` file and a rename."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def unreachable_reason(url, timeout=5.0):
    """Why `url`'s host cannot be reached now, or None if one connection works.

    TFDS retries a failing download with back-off for minutes; this answers
    in at most `timeout` seconds, so offline users get a fallback or a clear
    error at once.
    """
    parsed = urllib.parse.urlparse(url)
    if not parsed.hostname:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as error:
        return f"{parsed.hostname} is unreachable ({error})"
    return None
