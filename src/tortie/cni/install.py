"""Install the CNI executables: launchers named `tortie` and `tortie-ipam` in a CNI plugin directory.

CNI runtimes run the executable named by the network config's `type`, found in their plugin
directories (CNI_PATH). The Python console script `tortie` is already the CLI, so the plugins are
provided as two small launchers that run this installation's interpreter on the one entry module:

    DIR/tortie       #!<python> -IS  -> tortie.cni.launcher.launch("tortie")
    DIR/tortie-ipam  #!<python> -IS  -> tortie.cni.launcher.launch("tortie-ipam")

`launch` hands the call to the node's CNI service when it answers and serves it in-process
otherwise (tortie.cni.launcher).

Every CNI call is a new process, so start-up is latency (docs/design/cni.md, "Start-up cost"):

* `-I` (isolated mode) keeps a runtime's PYTHONPATH/PYTHONHOME, user site-packages and the current
  directory out of the plugin.
* `-S` skips the `site` module and its .pth files (~3 ms): the launcher puts the directories that hold
  tortie and its dependencies (found when installing, for the interpreter running the install) on
  sys.path itself. If tortie cannot be imported from them any more (the installation moved), the
  launcher runs `site` after all and imports again, so a stale launcher is slower, not broken. For
  another interpreter (`--python`) the launcher keeps `site` (`-I` only).
* The cyclic garbage collector is switched off (~7 ms of collections during the imports, which
  create no garbage cycles worth collecting in a process that lives for one call), and when the call
  is done every object is frozen (`gc.freeze`) before the usual interpreter shutdown, whose final
  collection would otherwise walk them all (~15 ms). Shutdown is otherwise unchanged: atexit
  handlers, thread joins and flushing all run.

If the interpreter path cannot be a shebang (too long or containing whitespace), a /bin/sh launcher
`exec`s `python -I -m tortie.cni.main <name>` instead (its `__main__` block does the same with the
collector). Files are written atomically (temp file + rename), mode 0755.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tortie.cni.main import PLUGINS

ENTRY_MODULE = "tortie.cni.main"  # PLUGINS: the names runtimes look up (a network config's "type")
LAUNCH_MODULE = "tortie.cni.launcher"
_MAX_SHEBANG = 120


@dataclass(frozen=True)
class Installed:
    name: str
    path: Path


def import_paths() -> list[str]:
    """Directories this interpreter imports tortie and its dependencies from (site-packages, and the
    source directory of an editable install)."""
    import site

    import tortie

    package_parent = str(Path(tortie.__file__).resolve().parent.parent)
    paths = [package_parent]
    for directory in site.getsitepackages():
        if directory not in paths and Path(directory).is_dir():
            paths.append(directory)
    return paths


def launcher_text(python: str, plugin: str, paths: Sequence[str] | None = None) -> str:
    """The launcher of `plugin`. With `paths`, the interpreter runs without `site` and imports from them."""
    module = LAUNCH_MODULE
    if len(python) + 5 <= _MAX_SHEBANG and not any(c.isspace() for c in python):
        lines = [
            f"#!{python} {'-IS' if paths else '-I'}",
            f"# tortie CNI launcher (written by `tortie cni install`): runs {module} {plugin}",
            "import gc",
            "import sys",
            "",
            "gc.disable()  # one call per process: collecting cycles during the imports is wasted work",
        ]
        if paths:
            lines += [
                f"sys.path += {list(paths)!r}",
                "try:",
                f"    from {module} import launch",
                "except ImportError:  # the installation moved: find it through site-packages after all",
                "    import site",
                "",
                "    site.main()",
                f"    from {module} import launch",
            ]
        else:
            lines.append(f"from {module} import launch")
        lines += [
            f"code = launch({plugin!r})",
            "gc.freeze()  # spares the shutdown's final collection a walk over every object",
            "sys.exit(code)",
        ]
        return "\n".join(lines) + "\n"
    quoted = "'" + python.replace("'", "'\\''") + "'"
    return (
        "#!/bin/sh\n# tortie CNI launcher (written by `tortie cni install`)\n"
        f"exec {quoted} -I -m {ENTRY_MODULE} {plugin}\n"
    )


def install(directory: str | os.PathLike[str], python: str | None = None) -> list[Installed]:
    """Write both launchers into `directory` (created if missing); returns what was written."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    interpreter = python or sys.executable
    paths = import_paths() if interpreter == sys.executable else None
    out = []
    for name in PLUGINS:
        path = target / name
        tmp = target / f".{name}.tmp{os.getpid()}"
        tmp.write_text(launcher_text(interpreter, name, paths))
        tmp.chmod(0o755)
        os.replace(tmp, path)
        out.append(Installed(name, path))
    return out
