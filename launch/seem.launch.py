"""Launch seem_node (autostarting lifecycle node) for one camera.

    ros2 launch seem_ros seem.launch.py camera_topic:=/camera/color/image_raw backend:=tensorrt
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("seem_ros"), "config", "seem.yaml")
    camera_topic = LaunchConfiguration("camera_topic")
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to segment"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                              description="CameraInfo of that camera (projects RViz clicked points)"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="seem_node parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("backend", default_value="torch", description="torch, onnxruntime or tensorrt"),
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
