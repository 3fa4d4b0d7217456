#!/usr/bin/env python3
"""Create the project's virtual environment and install placement-search into it.

    python3 scripts/bootstrap.py [--venv .venv] [--extras dev]

torch comes first, so that pip never pulls a multi-GB CUDA build onto a machine that
cannot use it:

* a torch already importable by the Python running this script (say, your CUDA build)
  is kept: the venv is created with ``--system-site-packages`` and reuses it;
* else, on a machine with an NVIDIA GPU (``nvidia-smi`` works), PyPI's default (CUDA)
  build is installed;
* else, on Linux, the CPU build: a wheel that pip's configured find-links already hold
  (``torch==2.13.0``), or PyTorch's CPU index; on macOS and Windows PyPI's build is the
  CPU build anyway.

Set ``PLACEMENT_SEARCH_TORCH`` to the pip arguments of your choice to override, e.g.
``PLACEMENT_SEARCH_TORCH="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"``.
Standard library only; Python >= 3.10.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
LOCAL_CPU_PIN = "torch==2.13.0"


def say(msg: str) -> None:
    print(f"[bootstrap] {msg}", flush=True)


def run(cmd: list[str], check: bool = True) -> bool:
    say("$ " + " ".join(shlex.quote(c) for c in cmd))
    return subprocess.run(cmd, check=check).returncode == 0


def has_torch(python: str) -> bool:
    return subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0


def has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def install_torch(python: str) -> None:
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    override = os.environ.get("PLACEMENT_SEARCH_TORCH")
    if override:
        run(pip + shlex.split(override))
        return
    if has_nvidia_gpu():
        say("NVIDIA GPU found: installing PyPI's CUDA build of torch")
        run(pip + ["torch>=2.2"])
        return
    if platform.system() != "Linux":
        say(f"{platform.system()}: PyPI's torch is the CPU/MPS build")
        run(pip + ["torch>=2.2"])
        return
    say("no NVIDIA GPU: installing torch's CPU build")
    if run(pip + ["--no-index", LOCAL_CPU_PIN], check=False):
        return
    if run(pip + ["--timeout", "60", "--retries", "2", "torch>=2.2", "--index-url", CPU_INDEX], check=False):
        return
    sys.exit(
        "[bootstrap] could not install torch's CPU build. Install torch into "
        f"{Path(python).parent.parent} yourself, or set PLACEMENT_SEARCH_TORCH to pip arguments, then rerun."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", default=str(ROOT / ".venv"))
    parser.add_argument("--extras", default="dev", help="optional dependency groups, comma-separated ('' for none)")
    args = parser.parse_args()
    if sys.version_info < (3, 10):  # noqa: UP036 - this script must run on old Pythons to say so
        sys.exit(f"[bootstrap] Python >= 3.10 is needed, this is {platform.python_version()}")

    env_dir = Path(args.venv)
    python = str(env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    if not Path(python).exists():
        reuse = has_torch(sys.executable)
        if reuse:
            say(f"{sys.executable} already has torch: the venv reuses it (--system-site-packages)")
        say(f"creating {env_dir}")
        venv.EnvBuilder(with_pip=True, system_site_packages=reuse).create(env_dir)
    if has_torch(python):
        say("torch is already installed: keeping it")
    else:
        install_torch(python)
    target = f".[{args.extras}]" if args.extras else "."
    run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", target], check=True)
    version = subprocess.run(
        [python, "-c", "import torch; print(torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    say(f"ready: {env_dir} (torch {version})")


if __name__ == "__main__":
    main()
