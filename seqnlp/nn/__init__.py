"""Plain nn.Modules: tensors in, tensors out, no training logic."""
