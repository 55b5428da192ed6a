from fakes.fixtures import *  # noqa: F401,F403  (compiled fake NVML/libcuda fixtures)
