import pkgutil
import subprocess
import sys

import side_core


def test_no_engine_module_imports_streamlit():
    """Every module of side_core (``__main__`` runs the CLI, so it is the CLI module's import): none
    pulls in streamlit."""
    names = [m.name for m in pkgutil.walk_packages(side_core.__path__, "side_core.") if m.name != "side_core.__main__"]
    assert "side_core.pipeline" in names and "side_core.stages" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "    if 'streamlit' in sys.modules:\n"
        "        sys.exit(name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
