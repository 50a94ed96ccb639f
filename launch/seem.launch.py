"""Launch seem_node (autostarting lifecycle node) for one camera.

    ros2 launch seem_ros seem.launch.py camera_topic:=/camera/color/image_raw backend:=tensorrt

Every seem_node parameter is also a launch argument (`ros2 launch seem_ros seem.launch.py
--show-args` lists them with their descriptions): one given on the command line overrides
params_file, one not given leaves params_file's value. camera_topic and camera_info_topic set the
image_topic and camera_info_topic parameters.

Fast DDS: a camera frame is larger than Fast DDS's default 512 KB shared-memory segment, and
best-effort frames that do not fit are lost. This launch file names the shipped 64 MB profile for
every process it starts, in the variable the installed Fast DDS reads (FASTDDS_DEFAULT_PROFILES_FILE
for Fast DDS 3: Kilted; FASTRTPS_DEFAULT_PROFILES_FILE for Fast DDS 2: Jazzy, Humble); a profile
already named in it is kept, another file with fastdds_profile:=FILE, none with fastdds_profile:=''.
The segment that matters is the publisher's: a camera driver started elsewhere needs the same
variable (README, troubleshooting).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from seem_ros.node.parameters import PARAMETERS, from_launch_text
from seem_ros.ros_in.fastdds import LARGE_SHM_PROFILE, profile_variable

NOT_GIVEN = "(params_file)"  # the default of a parameter's launch argument: params_file's value stands
CAMERA_ARGUMENTS = {"camera_topic": "image_topic", "camera_info_topic": "camera_info_topic"}  # argument: parameter
ARGUMENT_OF = {parameter: argument for argument, parameter in CAMERA_ARGUMENTS.items()}


def parameter_overrides(configurations: dict) -> dict:
    """The node parameters given as launch arguments (name:=value), typed as the parameters are."""
    overrides = {}
    for name in PARAMETERS:
        text = configurations.get(ARGUMENT_OF.get(name, name), NOT_GIVEN)
        if text != NOT_GIVEN:
            overrides[name] = from_launch_text(name, text)
    return overrides


def _node(context):
    return [Node(package="seem_ros", executable="seem_node", name="seem_node",
                 namespace=LaunchConfiguration("namespace"), output="screen",
                 parameters=[LaunchConfiguration("params_file"), parameter_overrides(context.launch_configurations)])]


def generate_launch_description():
    share = get_package_share_directory("seem_ros")
    fastdds_profile = LaunchConfiguration("fastdds_profile")
    variable = profile_variable()
    camera = [DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                                    description="sensor_msgs/Image topic to segment (the image_topic parameter)"),
              DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                                    description="CameraInfo of that camera (projects RViz clicked points)")]
    parameters = [DeclareLaunchArgument(name, default_value=NOT_GIVEN,
                                        description=f"{description} (seem_node parameter; default: params_file's, "
                                                    f"which ships {default!r})")
                  for name, (default, description) in PARAMETERS.items() if name not in CAMERA_ARGUMENTS.values()]
    return LaunchDescription(camera + [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "seem.yaml"),
                              description="seem_node parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        *parameters,
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=EnvironmentVariable(variable, default_value=os.path.join(share, LARGE_SHM_PROFILE)),
            description="Fast DDS profile for the processes of this launch ('' = Fast DDS defaults)"),
        SetEnvironmentVariable(variable, fastdds_profile,
                               condition=IfCondition(PythonExpression(["'", fastdds_profile, "' != ''"]))),
        OpaqueFunction(function=_node),
    ])
