"""Training: the paper's recipes as data and the loop that drives a backend's
trainer, with snapshots, disk checks and the data view the loss reads."""
