"""The Fast DDS profile with a shared-memory segment large enough for camera frames
(config/fastdds_large_shm.xml), and the environment variable that names it, which depends on the
Fast DDS a ROS install carries: Fast DDS 2 (Jazzy, Humble) reads only FASTRTPS_DEFAULT_PROFILES_FILE
(on Jazzy, a profile named in the other was not applied and best-effort frames were lost); Fast DDS 3
(Kilted and later) reads FASTDDS_DEFAULT_PROFILES_FILE and warns at every participant that the old
name is deprecated. No ROS import: the launch file, the demo and the benchmarks use it."""
import os
from typing import Dict, Mapping, Optional, Sequence

FASTDDS_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"  # Fast DDS 3
FASTRTPS_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"  # Fast DDS 2
LARGE_SHM_PROFILE = os.path.join("config", "fastdds_large_shm.xml")  # in the source tree and share/seem_ros


def profile_variable(prefixes: Optional[Sequence[str]] = None) -> str:
    """The variable the Fast DDS of the first ROS prefix that has one reads (AMENT_PREFIX_PATH by
    default): Fast DDS 3 installs its CMake package as share/fastdds, Fast DDS 2 as share/fastrtps."""
    if prefixes is None:
        prefixes = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    for prefix in filter(None, prefixes):
        if os.path.isdir(os.path.join(prefix, "share", "fastdds")):
            return FASTDDS_VARIABLE
        if os.path.isdir(os.path.join(prefix, "share", "fastrtps")):
            return FASTRTPS_VARIABLE
    return FASTDDS_VARIABLE


def profile_environment(profile: str, prefixes: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """The environment that makes the installed Fast DDS read `profile`."""
    return {profile_variable(prefixes): profile}


def profile_in(environment: Mapping[str, str]) -> Optional[str]:
    """The profile an environment already names, under either name."""
    return environment.get(FASTDDS_VARIABLE) or environment.get(FASTRTPS_VARIABLE) or None
