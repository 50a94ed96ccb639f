"""`ros2 launch PACKAGE FILE name:=value ...` without the ros2 CLI (which no registry here carries),
done as ros2launch does it: a LaunchService that includes the package's installed launch file
with the arguments as launch arguments. Exits with the LaunchService's return code.

    ros2_launch.py seem_ros seem.launch.py camera_topic:=/camera/color/image_raw backend:=torch"""
import os
import sys

from ament_index_python.packages import get_package_share_directory
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def main(argv) -> int:
    package, file_name, *arguments = argv
    path = os.path.join(get_package_share_directory(package), "launch", file_name)
    launch_arguments = [tuple(argument.split(":=", 1)) for argument in arguments]
    service = LaunchService(argv=argv)
    service.include_launch_description(IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                                                launch_arguments=launch_arguments))
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
