"""From a PyTorch model to checked ONNX artifacts: BatchNorm folding, export, precision variants, manifests."""
