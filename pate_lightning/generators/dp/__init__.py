"""DP-SGD for stacked per-teacher generators: per-sample clipping (``per_sample``) and the module (``module``)."""
