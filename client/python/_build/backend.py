"""A PEP 517 build backend in the standard library alone.

The package is pure Python with no dependencies; building its wheel needs
no more than zipfile, and a backend of our own keeps `pip install
./client/python` working on a machine without a package index (pip
would otherwise fetch setuptools into its isolated build environment).
"""

import base64
import hashlib
import io
import os
import tarfile
import zipfile

NAME = "hotplex"
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _version():
    # The one version string, in pyproject.toml (tomllib is 3.11+).
    with open(os.path.join(HERE, "pyproject.toml"), encoding="utf-8") as f:
        for line in f:
            k, _, v = line.partition("=")
            if k.strip() == "version":
                return v.strip().strip('"')
    raise RuntimeError("no version in pyproject.toml")


def _metadata():
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    return ("Metadata-Version: 2.1\n"
            "Name: %s\n"
            "Version: %s\n"
            "Summary: Client for hotplexd, the HotPlex multi-session "
            "Claude Code daemon\n"
            "Requires-Python: >=3.9\n"
            "Description-Content-Type: text/markdown\n"
            "\n%s" % (NAME, _version(), readme))


def _sources():
    pkg = os.path.join(HERE, NAME)
    for n in sorted(os.listdir(pkg)):
        if n.endswith(".py") or n == "py.typed":
            yield os.path.join(pkg, n), "%s/%s" % (NAME, n)


def _record_line(arc, data):
    digest = base64.urlsafe_b64encode(
        hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d\n" % (arc, digest, len(data))


def _distinfo():
    return "%s-%s.dist-info" % (NAME, _version())


def _wheel_files():
    wheel = ("Wheel-Version: 1.0\nGenerator: hotplex-backend\n"
             "Root-Is-Purelib: true\nTag: py3-none-any\n")
    files = []
    for path, arc in _sources():
        with open(path, "rb") as f:
            files.append((arc, f.read()))
    di = _distinfo()
    files.append((di + "/METADATA", _metadata().encode()))
    files.append((di + "/WHEEL", wheel.encode()))
    return files


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory,
                                     config_settings=None):
    d = os.path.join(metadata_directory, _distinfo())
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata())
    return _distinfo()


def build_wheel(wheel_directory, config_settings=None,
                metadata_directory=None):
    name = "%s-%s-py3-none-any.whl" % (NAME, _version())
    record = _distinfo() + "/RECORD"
    lines = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w",
                         zipfile.ZIP_DEFLATED) as z:
        for arc, data in _wheel_files():
            z.writestr(arc, data)
            lines.append(_record_line(arc, data))
        lines.append(record + ",,\n")
        z.writestr(record, "".join(lines))
    return name


def build_sdist(sdist_directory, config_settings=None):
    base = "%s-%s" % (NAME, _version())
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for rel in ("pyproject.toml", "README.md", "_build/backend.py"):
            t.add(os.path.join(HERE, rel), base + "/" + rel)
        for path, arc in _sources():
            t.add(path, base + "/" + arc)
        info = tarfile.TarInfo(base + "/PKG-INFO")
        data = _metadata().encode()
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return name
