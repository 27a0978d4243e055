"""``pate-lightning compare``: routes (pipeline configs) side by side with replicates, one table and one picture."""
