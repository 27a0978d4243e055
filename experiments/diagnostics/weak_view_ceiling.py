# Why does the student train on blurrier images than the test's? A diagnostic; see experiments/diagnostics/README.md. Uses TRUE labels: not a PATE result.
"""Diagnostic: supervised SmallCNN on the 8,000 held-out query-pool images with TRUE labels -> last 1,000 test."""
import sys, time, torch
from pathlib import Path
from pate_lightning.pate.queries import mnist_test_queries, holdout_set
from pate_lightning.pate.student_training import StudentSettings, train_student
torch.set_num_threads(2)
q = mnist_test_queries("data", "papers"); test = holdout_set("data", "papers")
n = int(sys.argv[1]); epochs = int(sys.argv[2])
s = StudentSettings(method="supervised", architecture="small_cnn", batch_size=64, augment=True, val_fraction=0.0,
                    lr=3e-3, epochs=epochs, cosine=True)
t = time.time()
r = train_student(q.images[:n], q.truth[:n], test, s, "cpu", 0, Path("/tmp/diag/l"))
print(n, epochs, r["test_accuracy"], [round(x,3) for x in r["test_accuracy_per_class"]], round(time.time()-t))
