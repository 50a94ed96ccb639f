"""The package runs on Python 3.10 (ROS 2 Humble on JetPack 6) as well as on 3.11 and newer: vermin
finds no construct newer than 3.10 in seem_ros/ or the launch file."""
import pathlib
import subprocess
import sys

from conftest import REPO

# vermin reads torch's `.long()` / `torch.long` as Python 2's `long` builtin
VERMIN = [str(pathlib.Path(sys.executable).parent / "vermin"), "--target=3.10-", "--violations", "--no-tips", "--eval-annotations",
          "--exclude", "long"]


def test_nothing_needs_a_python_newer_than_3_10():
    checked = subprocess.run(VERMIN + [str(REPO / "seem_ros"), str(REPO / "launch")], capture_output=True,
                             text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Minimum required versions: 3." in checked.stdout


def test_the_check_bites_on_a_python_3_11_construct(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("try:\n    pass\nexcept* ValueError:\n    pass\n")  # exception groups: 3.11
    checked = subprocess.run(VERMIN + [str(newer)], capture_output=True, text=True, timeout=300)
    assert checked.returncode != 0 and "3.11" in checked.stdout
