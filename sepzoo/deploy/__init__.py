"""Running exported (ONNX) models with NumPy and onnxruntime only.

Nothing in this package imports torch: a deployment that installs onnxruntime, NumPy and
soundfile separates with an exported folder through :mod:`sepzoo.deploy.runtime`. The steps a
network graph leaves outside (STFT, inverse STFT, complex masking, Wiener filtering, chunking
and overlap-add) are written here in NumPy, once; with torch installed, ``sepzoo separate``
runs the same steps through the torch engine.
"""
