"""A robot's requests to a frame server on its own host through system shared memory: each
request's inputs are written into one region and the server writes the outputs into another, so
that neither travels through the gRPC stream (a frame's canvas image is most of a request).

Regions are this process's, named after it, registered with the server at each connection (a
restarted server has forgotten them) and grown when a request needs more. A server on another
host cannot open them: registration fails, and the transport goes on without (the caller says so)."""
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

INITIAL_BYTES = 8 << 20


class SharedMemoryIO:
    def __init__(self, client, timeout_s: float):
        self.client = client
        self.timeout_s = timeout_s
        self.prefix = f"seem_ros_{os.getpid()}_{id(self):x}"
        self.regions: Dict[str, Tuple[object, int]] = {}  # "in" / "out" -> (handle, bytes)

    def names(self):
        return [f"{self.prefix}_{role}" for role in self.regions]

    def register(self) -> None:
        """(Re)registers both regions with the server; InferenceServerException where it cannot open them."""
        for role in ("in", "out"):
            self._region(role, self.regions[role][1] if role in self.regions else INITIAL_BYTES, force=True)

    def _region(self, role: str, size: int, force: bool = False):
        import tritonclient.utils.shared_memory as shm
        from tritonclient.utils import InferenceServerException
        name = f"{self.prefix}_{role}"
        handle, capacity = self.regions.get(role, (None, 0))
        if handle is not None and capacity >= size and not force:
            return handle
        if handle is not None and capacity < size:  # grown: a new region of the next power of two
            self._unregister(name)
            shm.destroy_shared_memory_region(handle)
            handle, capacity = None, 1 << (size - 1).bit_length()
        if handle is None:
            capacity = max(capacity, size)
            handle = shm.create_shared_memory_region(name, f"/{name}", capacity)
            self.regions[role] = (handle, capacity)
        try:  # a server that restarted has forgotten it; one that did not still holds it
            self._unregister(name)
        except InferenceServerException:
            pass
        self.client.register_system_shared_memory(name, f"/{name}", capacity, client_timeout=self.timeout_s)
        return handle

    def _unregister(self, name: str) -> None:
        self.client.unregister_system_shared_memory(name, client_timeout=self.timeout_s)

    def inputs(self, arrays: Dict[str, np.ndarray]) -> List[object]:
        """The request's inputs (with their batch dimension) written into the input region."""
        import tritonclient.grpc as grpcclient
        import tritonclient.utils.shared_memory as shm
        from tritonclient.utils import np_to_triton_dtype
        contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
        handle = self._region("in", sum(a.nbytes for a in contiguous.values()))
        tensors, offset = [], 0
        for name, array in contiguous.items():
            shm.set_shared_memory_region(handle, [array], offset=offset)
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_shared_memory(f"{self.prefix}_in", array.nbytes, offset)
            tensors.append(tensor)
            offset += array.nbytes
        return tensors

    def outputs(self, sizes: Sequence[Tuple[str, int]]) -> List[object]:
        """Outputs (name, largest byte size) placed in the output region."""
        import tritonclient.grpc as grpcclient
        self._region("out", sum(size for _, size in sizes))
        requested, offset = [], 0
        for name, size in sizes:
            output = grpcclient.InferRequestedOutput(name)
            output.set_shared_memory(f"{self.prefix}_out", size, offset)
            requested.append(output)
            offset += size
        return requested

    def read(self, result, sizes: Sequence[Tuple[str, int]]) -> Dict[str, np.ndarray]:
        """The outputs of `result` (requested by outputs(sizes)), copied out of the region."""
        import tritonclient.utils.shared_memory as shm
        from tritonclient.utils import triton_to_np_dtype
        handle = self.regions["out"][0]
        arrays, offset = {}, 0
        for name, size in sizes:
            output = result.get_output(name)
            arrays[name] = shm.get_contents_as_numpy(handle, triton_to_np_dtype(output.datatype), list(output.shape),
                                                     offset).copy()
            offset += size
        return arrays

    def release(self, registered: bool) -> None:
        import tritonclient.utils.shared_memory as shm
        from tritonclient.utils import InferenceServerException
        for role, (handle, _) in self.regions.items():
            if registered:
                try:
                    self._unregister(f"{self.prefix}_{role}")
                except InferenceServerException:
                    pass
            shm.destroy_shared_memory_region(handle)
        self.regions.clear()
