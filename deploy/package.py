"""Build the source bundle the three Cloud Functions deploy from.

Cloud Functions (2nd gen, python312) wants `main.py` and `requirements.txt` at the root of the source; the
functions import the `shared` library, so it goes in beside them. One bundle serves all three functions
(entry points submit, poll, collect).

    python -m deploy.package [--out dist/function-source.zip]
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Fixed timestamps keep the zip byte-identical for identical sources (stable hashes for Terraform).
_EPOCH = (2020, 1, 1, 0, 0, 0)


def sources() -> list[tuple[Path, str]]:
    files = [(ROOT / "functions" / "main.py", "main.py"), (ROOT / "requirements.txt", "requirements.txt")]
    for path in sorted((ROOT / "shared").rglob("*.py")):
        files.append((path, path.relative_to(ROOT).as_posix()))
    return files


def build(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path, name in sources():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            bundle.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the Cloud Functions source bundle.")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "function-source.zip")
    args = parser.parse_args()
    print(build(args.out))


if __name__ == "__main__":
    main()
