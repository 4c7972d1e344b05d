"""The tests are a package so that pytest and `from tests.conftest import ...` load one conftest
module, not two copies with two state folders. Layers by what a test needs: unit/ (no servers,
no subprocesses), model/ (ONNX and onnxruntime, the golden model), integration/ (real servers,
CLI processes, whole flows)."""
