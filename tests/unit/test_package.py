"""The deploy bundle: what Cloud Functions needs at its root, importable on its own, reproducible."""

import subprocess
import sys
import zipfile

from deploy.package import build


def test_bundle_has_main_requirements_and_shared_and_imports_standalone(tmp_path):
    out = build(tmp_path / "a.zip")
    names = zipfile.ZipFile(out).namelist()
    assert "main.py" in names and "requirements.txt" in names and "shared/submit.py" in names
    assert not any(n.startswith(("tests/", "local/", ".venv")) or "__pycache__" in n for n in names)
    root = tmp_path / "src"
    zipfile.ZipFile(out).extractall(root)
    # The deployed layout must import without the repository on the path (only the bundle).
    code = "import shared.submit, shared.poll, shared.collect, shared.handlers"
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, env={"PYTHONPATH": str(root)})
    assert build(tmp_path / "b.zip").read_bytes() == out.read_bytes()
