"""The newest published releases of the packages the model depends on most, for CI's last pass (.ci/newest-releases).

pip resolves the newest transformers, tokenizers, huggingface_hub and torch it can install beside the rest of the
environment (the other packages' requirements still hold, so `datasets` keeps a huggingface_hub it accepts), and
what that resolution installs or upgrades goes into a folder of its own under .cache/newest/, put first on
PYTHONPATH: the environment itself is not changed. The folder is kept between runs and made anew when the
resolution changes, which is how a new release reaches CI.

    python tests/newest_releases.py install    # prints the folder
    python tests/newest_releases.py describe FOLDER    # "transformers 5.25.0, tokenizers 0.23.3, ..."
    python tests/newest_releases.py changed FOLDER     # what differs from this environment: "torch"
"""

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

NEWEST_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "newest"
PACKAGES = ("transformers", "tokenizers", "huggingface_hub", "torch")
INSTALLED_MARK = ".installed"  # written last: its pins, one a line
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def resolve() -> dict[str, str]:
    """What pip would install or upgrade to bring PACKAGES to their newest releases: {name: version}."""
    done = subprocess.run(
        [*PIP, "install", "--dry-run", "--quiet", "--upgrade", "--report", "-", *PACKAGES],
        capture_output=True, text=True, check=True,
    )
    report = json.loads(done.stdout)
    return {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


def installed_versions(folder: Path) -> dict[str, str]:
    """The pins a finished install of `folder` recorded (empty where the install did not finish)."""
    mark = folder / INSTALLED_MARK
    if not mark.exists():
        return {}
    return dict(line.split("==") for line in mark.read_text().split())


def install() -> Path:
    """The folder holding the newest releases (installed there unless an earlier run did)."""
    pins = resolve()
    # Named by the versions that will run: the resolved ones, or this environment's where it has the newest already.
    versions = {name: pins.get(name) or importlib.metadata.version(name) for name in map(canonicalize_name, PACKAGES)}
    folder = NEWEST_CACHE / "-".join(f"{name}-{version}" for name, version in versions.items())
    if installed_versions(folder) != pins:
        requirements = [f"{name}=={version}" for name, version in sorted(pins.items())]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        if requirements:  # none where the environment already has the newest of everything
            subprocess.run(
                [*PIP, "install", "--quiet", "--no-deps", "--no-warn-conflicts", "--target", str(folder), *requirements],
                check=True,
            )  # --no-deps: the resolution above is the whole set
        (folder / INSTALLED_MARK).write_text("".join(f"{pin}\n" for pin in requirements))
    return folder


def describe(folder: Path) -> str:
    """The versions of PACKAGES that run with `folder` first on the path."""
    code = "import importlib.metadata as m, sys; print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, *PACKAGES], env={"PYTHONPATH": str(folder)}, capture_output=True, text=True,
        check=True,
    )
    return done.stdout.strip()


def changed(folder: Path) -> list[str]:
    """The packages whose newest release `folder` holds in place of this environment's."""
    return sorted(installed_versions(folder))


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        print(install())
    elif sys.argv[1:2] == ["describe"] and len(sys.argv) == 3:
        print(describe(Path(sys.argv[2])))
    elif sys.argv[1:2] == ["changed"] and len(sys.argv) == 3:
        print(" ".join(changed(Path(sys.argv[2]))))
    else:
        raise SystemExit("usage: python tests/newest_releases.py install | describe FOLDER | changed FOLDER")
