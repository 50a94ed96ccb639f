"""Launch seem_node (autostarting lifecycle node) for one camera.

    ros2 launch seem_ros seem.launch.py camera_topic:=/camera/color/image_raw backend:=tensorrt

Fast DDS: a camera frame is larger than Fast DDS's default 512 KB shared-memory segment, and
best-effort frames that do not fit are lost. This launch file sets FASTDDS_DEFAULT_PROFILES_FILE to
the shipped 64 MB profile for every process it starts (an existing setting is kept; another file
with fastdds_profile:=FILE, none with fastdds_profile:=''). The segment that matters is the
publisher's: a camera driver started elsewhere needs the same variable (README, troubleshooting).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("seem_ros")
    camera_topic = LaunchConfiguration("camera_topic")
    fastdds_profile = LaunchConfiguration("fastdds_profile")
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to segment"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                              description="CameraInfo of that camera (projects RViz clicked points)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "seem.yaml"),
                              description="seem_node parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("backend", default_value="torch", description="torch, onnxruntime or tensorrt"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=EnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                              default_value=os.path.join(share, "config", "fastdds_large_shm.xml")),
            description="Fast DDS profile for the processes of this launch ('' = Fast DDS defaults)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", fastdds_profile,
                               condition=IfCondition(PythonExpression(["'", fastdds_profile, "' != ''"]))),
        Node(
            package="seem_ros",
            executable="seem_node",
            name="seem_node",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[LaunchConfiguration("params_file"), {
                "image_topic": camera_topic,
                "camera_info_topic": LaunchConfiguration("camera_info_topic"),
                "backend": LaunchConfiguration("backend"),
            }],
        ),
    ])
