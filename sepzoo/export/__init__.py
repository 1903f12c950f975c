"""Export of trained separators to deployable formats (ONNX)."""
