"""The plugin guide's complete example works as written, built as its own distribution.

Section 4 of docs/writing-a-plugin.md is a whole plugin in fenced blocks, each opening with a
comment naming its file. This test writes those files out, installs ductwork (from a wheel of
this checkout, with its ``testing`` extra) and the example into a fresh virtual environment,
and runs what the guide tells an author to run: ``ductwork plugins list`` and pytest.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "writing-a-plugin.md"
BLOCK = re.compile(r"^```(?:python|toml)\n# (?P<path>[\w./-]+)\n(?P<body>.*?)^```\n", re.M | re.S)


def guide_files() -> dict[str, str]:
    """The files of the guide's complete example: path -> text."""
    text = GUIDE.read_text()
    section = text[text.index("## 4. A whole plugin, end to end") :]
    files = {m["path"]: m["body"] for m in BLOCK.finditer(section)}
    assert {"pyproject.toml", "tests/test_sqlkv.py"} <= set(files), sorted(files)
    return files


def _run(*args: str | Path, cwd: Path | None = None) -> str:
    # the venv's own tools, not this checkout's environment; plugins autoloaded as users have them
    skip = ("VIRTUAL_ENV", "UV_", "DUCTWORK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_guides_plugin_installs_registers_and_passes_its_suite(tmp_path):
    uv = shutil.which("uv")
    assert uv, "uv is needed to build the wheel and the virtual environment"
    example = tmp_path / "ductwork-sqlkv"
    for path, body in guide_files().items():
        (example / path).parent.mkdir(parents=True, exist_ok=True)
        (example / path).write_text(body)
    wheels = tmp_path / "wheels"
    _run(uv, "build", "--wheel", "--package", "ductwork", "--out-dir", wheels, cwd=ROOT)
    (wheel,) = wheels.glob("ductwork-*.whl")
    venv = tmp_path / "venv"
    _run(uv, "venv", "--python", sys.executable, venv)
    python = venv / "bin" / "python"
    _run(uv, "pip", "install", "--python", python, f"ductwork[testing] @ {wheel.as_uri()}", example)

    listed = _run(venv / "bin" / "ductwork", "plugins", "list")
    row = next(line.split("\t") for line in listed.splitlines() if line.startswith("sqlkv\t"))
    assert row[1:] == ["ductwork-sqlkv", "0.1.0", "cache:sqlkv", "ok"]

    report = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=example)
    assert re.search(r"^\d+ passed", report.splitlines()[-1]), report
    assert "failed" not in report and "error" not in report
