"""Models that leave the training machine: exported folders (safetensors, codec files,
a model card), ONNX graphs, and loading folders back, locally or from the Hub.

``folder`` is torch-free (ONNX Runtime prediction reads folders through it);
``writer`` writes folders from checkpoints, ``loading`` reads them into torch.
"""
