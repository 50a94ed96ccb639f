import glob
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PACKAGE = "seem_ros"


class BuildWithMessages(build_py):
    """Ships the top-level msg/*.msg inside the package (seem_ros/msg): `seem-ros track` registers
    the message types in its bags from them, also where no ROS install provides them."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, PACKAGE, "msg")
        os.makedirs(target, exist_ok=True)
        for path in glob.glob("msg/*.msg"):
            shutil.copy(path, target)


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", ["launch/seem.launch.py"]),
        (f"share/{PACKAGE}/config", ["config/seem.yaml", "config/fastdds_large_shm.xml"]),
    ],
    cmdclass={"build_py": BuildWithMessages},
    entry_points={"console_scripts": ["seem_node = seem_ros.node.process:main", "seem-ros = seem_ros.tools.cli:main"]},
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="seem_ros developers",
    maintainer_email="seem-ros@example.com",
    description="SEEM promptable segmentation (text, clicks, boxes, scribbles, example regions) for ROS 2",
    license="Apache-2.0",
)
