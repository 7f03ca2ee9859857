import subprocess
import sys


def test_engine_does_not_import_streamlit():
    code = (
        "import sys, side_core, side_core.pipeline, side_core.cli, side_core.report; "
        "sys.exit(1 if 'streamlit' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
